"""How the fast inference engine (:mod:`fashionseg.inference.segmenter`)
runs: precision, memory layout, batch-norm folding, ``torch.compile`` mode,
batch size and JPEG decoder, and the agreement with eager fp32 a fast
setting must reach."""
from dataclasses import asdict, dataclass, fields

import torch

PRECISIONS = {'fp32': torch.float32, 'tf32': torch.float32,
              'bf16': torch.bfloat16, 'fp16': torch.float16}
COMPILE_MODES = ('none', 'default', 'reduce-overhead', 'max-autotune')
# The modes that capture CUDA graphs on a GPU.
CUDA_GRAPH_MODES = ('reduce-overhead', 'max-autotune')
# Where JPEG bytes are decoded: by mmcv (OpenCV) on the host, as the
# config's pipeline does, or by torchvision on the engine's device
# (nvJPEG on a GPU; :mod:`fashionseg.inference.jpeg_decoding`).
DECODERS = ('host', 'device')
# The least fraction of pixels a fast setting must label as eager fp32
# does before its figures are used.
AGREEMENT_BAR = 0.995


# More images per forward pass than any GPU holds at the paper's size.
MAX_BATCH_SIZE = 4096
# The engine setting a benchmark times when none is asked for, per device
# type: on a GPU the fastest row measured so far (bf16 channels-last
# batch 32: 780.8 images/s model only on one H200, 2026-11-30); on a CPU
# eager fp32 in channels-last, one image at a time (2.22 images/s against
# 1.92 in the default layout and 2.16 at batch 2 for the paper's FPN on
# this project's 2-core CPU, docs/inference.md).
DEVICE_DEFAULTS = {'cuda': 'bf16,channels-last,batch=32',
                   'cpu': 'fp32,channels-last,batch=1'}


@dataclass(frozen=True)
class InferenceSettings:
    """How the engine runs: ``precision`` fp32 (TF32 off, the reference),
    tf32, bf16 or fp16 (autocast); ``channels_last`` memory layout;
    ``compile`` one of :data:`COMPILE_MODES`; ``batch_size`` images per
    forward pass; ``fold_bn`` each batch norm folded into the convolution
    before it (:mod:`fashionseg.inference.batch_norm_folding`);
    ``decode`` where JPEG bytes are decoded (:data:`DECODERS`), for the
    runs that start from them."""
    precision: str = 'fp32'
    channels_last: bool = False
    compile: str = 'none'
    batch_size: int = 1
    fold_bn: bool = False
    decode: str = 'host'

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {tuple(PRECISIONS)},'
                             f' not {self.precision!r}')
        if self.compile not in COMPILE_MODES:
            raise ValueError(f'compile must be one of {COMPILE_MODES}, not '
                             f'{self.compile!r}')
        if self.decode not in DECODERS:
            raise ValueError(f'decode must be one of {DECODERS}, not '
                             f'{self.decode!r}')
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f'batch_size must be between 1 and '
                             f'{MAX_BATCH_SIZE}, not {self.batch_size}')

    @property
    def is_reference(self) -> bool:
        return (self.precision == 'fp32' and not self.channels_last
                and self.compile == 'none' and not self.fold_bn
                and self.decode == 'host')

    def name(self) -> str:
        parts = [self.precision] + (['channels-last']
                                    if self.channels_last else []) + (
            ['fold-bn'] if self.fold_bn else [])
        if self.compile != 'none':
            parts.append(f'compile-{self.compile}')
        if self.decode != 'host':
            parts.append(f'decode-{self.decode}')
        return ' '.join(parts) + f' batch {self.batch_size}'

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> 'InferenceSettings':
        """The settings in ``values`` (an :meth:`as_dict` record, perhaps
        with more keys, as a benchmark row has)."""
        return cls(**{f.name: values[f.name] for f in fields(cls)
                      if f.name in values})

    @classmethod
    def device_default(cls, device: str) -> 'InferenceSettings':
        """:data:`DEVICE_DEFAULTS` for ``device`` (``cuda:0``, ``cpu``)."""
        return cls.parse(DEVICE_DEFAULTS.get(
            torch.device(device).type, DEVICE_DEFAULTS['cpu']))

    @classmethod
    def parse(cls, text: str) -> 'InferenceSettings':
        """A setting written as ``PRECISION[,channels-last][,fold-bn]
        [,compile=MODE][,batch=N][,decode=device]``, e.g. ``bf16,
        channels-last,compile=max-autotune,batch=32``."""
        parts = [part.strip() for part in text.split(',')]
        if not any(parts):
            raise ValueError('an empty inference setting')
        if not all(parts):
            raise ValueError(f'an empty item in the inference setting '
                             f'{text!r}')
        if parts[0] not in PRECISIONS:
            raise ValueError(
                f'the inference setting {text!r} begins with {parts[0]!r}, '
                f'not a precision ({", ".join(PRECISIONS)})')
        values = dict(precision=parts[0])
        names = dict(channels_last='channels-last', fold_bn='fold-bn',
                     compile='compile', batch_size='batch', decode='decode')
        for part in parts[1:]:
            key, _, value = part.partition('=')
            if part == 'channels-last':
                field, parsed = 'channels_last', True
            elif part == 'fold-bn':
                field, parsed = 'fold_bn', True
            elif key == 'compile' and value in COMPILE_MODES:
                field, parsed = 'compile', value
            elif key == 'batch' and value.isdigit() and \
                    1 <= int(value) <= MAX_BATCH_SIZE:
                field, parsed = 'batch_size', int(value)
            elif key == 'decode' and value in DECODERS:
                field, parsed = 'decode', value
            else:
                raise ValueError(
                    f'{part!r} in the inference setting {text!r}: expected '
                    'channels-last, fold-bn, compile='
                    f'{"|".join(COMPILE_MODES)}, batch=N (1 to '
                    f'{MAX_BATCH_SIZE}) or decode={"|".join(DECODERS)}')
            if field in values:
                raise ValueError(f'{names[field]} twice in the inference '
                                 f'setting {text!r}')
            values[field] = parsed
        return cls(**values)

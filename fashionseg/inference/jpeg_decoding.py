"""JPEG bytes decoded on the engine's device: torchvision's decoder (nvJPEG
on a GPU, batched; libjpeg on a CPU), for the engine's ``decode=device``
setting (:mod:`fashionseg.inference.settings`).

The config's pipeline decodes with mmcv (OpenCV's libjpeg) on the host.
Another decoder may round some pixels differently (inverse DCT, chroma
upsampling), and nvJPEG leaves EXIF orientation unapplied, so labels of
images decoded here are trusted only as far as they agree with eager fp32
on the host-decoded images, as every fast setting's are
(:data:`~fashionseg.inference.settings.AGREEMENT_BAR`).
"""
from typing import List, Sequence

import torch

from fashionseg.errors import UsageError

# The test pipeline steps that decoding on the device replaces or does
# itself: loading (decoding) and packing (to 3 x H x W).
_DECODE_AND_PACK = ('LoadImageFromNDArray', 'PackSegInputs')


class DeviceDecodingError(UsageError):
    """``decode=device`` where it cannot run: no torchvision, or a test
    pipeline that transforms the decoded image."""


def check_device_decoding(pipeline: Sequence[dict]) -> None:
    """Refuse ``decode=device`` without torchvision, or for a test pipeline
    (as :func:`fashionseg.inference.segmenter.test_pipeline_for_arrays`
    gives it) that does more than decode and pack: its other steps (a
    resize, say) run on the host's arrays."""
    _decode_jpeg()
    others = [step['type'] for step in pipeline
              if step['type'] not in _DECODE_AND_PACK]
    if others:
        raise DeviceDecodingError(
            'decode=device runs test pipelines that only load and pack '
            f'the image; this one also has {", ".join(others)}')


def _decode_jpeg():
    try:
        from torchvision.io import decode_jpeg
    except ImportError as error:
        raise DeviceDecodingError(
            'decode=device needs torchvision (torchvision.io.decode_jpeg), '
            f'which does not import here: {error}') from None
    return decode_jpeg


def decode_jpegs(data: Sequence[bytes], device: torch.device
                 ) -> List[torch.Tensor]:
    """JPEG bytes to 3 x H x W uint8 tensors on ``device`` in BGR order,
    as ``mmcv.imfrombytes`` and the config's ``PackSegInputs`` give them
    (greyscale photos as three equal channels); one batched call."""
    decode_jpeg = _decode_jpeg()
    encoded = [torch.frombuffer(bytearray(item), dtype=torch.uint8)
               for item in data]
    images = decode_jpeg(encoded, mode='RGB', device=torch.device(device))
    return [image.flip(0) for image in images]

"""The harness's fast inference engine: batched, on the device, with a
choice of precision, memory layout and ``torch.compile``.

The paper's protocol (MMSegmentation's ``inference_model``, one image at a
time, eager fp32; paper section 5) stays in
:mod:`fashionseg.benchmarks.inference`. This engine computes the same
labels the same way (the config's test pipeline, the data preprocessor's
normalisation and padding, backbone, neck and decode head, the crop and
the bilinear upsampling of ``EncoderDecoder.postprocess_result``) without
MMSegmentation's per-sample ``test_step`` work: images are padded on the
host (where they are), normalised on the device in the network's graph,
and a batch whose images differ in size runs as one forward pass per
padded size, so that batching never changes a label.

A fast setting (:mod:`fashionseg.inference.settings`) is trusted
only as far as it agrees with eager fp32 (TF32 off):
:func:`label_agreement` gives the fraction of equal pixels, and
``AGREEMENT_BAR`` is the bar the tables require.

(About 280 lines: building the model, the preprocessing and the
postprocessing are one path that must match MMSegmentation's step for
step, kept in one place so that it can be read against it.)
"""
import contextlib
import copy
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS

from fashionseg.checkpoints.loading import load_weights_strictly
from fashionseg.config_checks import (check_checkpoint, check_config_path,
                                      load_config)
from fashionseg.errors import UsageError
from fashionseg.inference.batch_norm_folding import fold_batch_norms
from fashionseg.inference.jpeg_decoding import (check_device_decoding,
                                                decode_jpegs)
from fashionseg.inference.settings import (AGREEMENT_BAR, CUDA_GRAPH_MODES,
                                           PRECISIONS, InferenceSettings)

_LOADING_TRANSFORMS = ('LoadImageFromFile', 'LoadAnnotations',
                       'LoadImageFromNDArray')
# How many sets of a pass's image sizes the engine keeps on the device.
SIZES_KEPT = 64
# How many compiled variants of the engine's forward pass a process keeps
# (one per padded shape, output kind, precision, layout and engine).
COMPILED_VARIANTS = 64


@dataclass
class Prediction:
    """One image's result: ``labels`` (H x W uint8 tensor at the image's
    original size) and, when asked for, ``decode_scores`` (the decode
    head's output, classes x h x w float32, covering the padded input of
    ``input_shape``; the CRF's input, :mod:`fashionseg.runner.score_hook`)."""
    labels: torch.Tensor
    decode_scores: Optional[torch.Tensor] = None
    input_shape: Optional[tuple] = None


def build_model(cfg: Config, checkpoint: Optional[str],
                device: str = 'cpu') -> torch.nn.Module:
    """The config's segmentor for inference, with ``checkpoint``'s weights
    loaded strictly (:func:`load_weights_strictly`), SyncBN reverted to
    BN, in eval mode on ``device``."""
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model_cfg = cfg.model.copy()
    model_cfg.pretrained = None
    model_cfg.train_cfg = None
    model_cfg.setdefault('backbone', {}).pop('init_cfg', None)
    model = MODELS.build(model_cfg)
    model.cfg = cfg
    meta = {} if checkpoint is None else load_weights_strictly(
        model, checkpoint, cfg.filename)
    model.dataset_meta = meta.get('dataset_meta') or _dataset_metainfo(cfg)
    model = revert_sync_batchnorm(model)
    return model.to(device).eval()


def _dataset_metainfo(cfg: Config) -> Optional[dict]:
    """Classes and palette of the config's test dataset class."""
    dataset_type = cfg.get('test_dataloader', {}).get('dataset', {}).get(
        'type')
    dataset_class = DATASETS.get(dataset_type) if dataset_type else None
    return dict(dataset_class.METAINFO) if dataset_class else None


class Segmenter:
    """Batched inference with one model; see the module docstring.

    ``segment(images)`` takes decoded BGR images (H x W x 3 uint8, as
    ``mmcv.imread`` gives them) and returns one :class:`Prediction` each.
    """

    def __init__(self, model: torch.nn.Module, cfg: Config,
                 settings: InferenceSettings = InferenceSettings(),
                 device: Optional[str] = None):
        # What was given; ``model`` is what runs: a copy where a setting
        # changes the weights or their layout, so that the given model
        # (a runner's, the reference's) stays as it was.
        self.source_model = model
        self.model = model.eval()
        self.cfg = cfg
        self.settings = settings
        self.device = torch.device(
            device or next(model.parameters()).device)
        if self.device.type == 'cuda' and self.device.index is None:
            # The copy stream and the compute stream of one device.
            self.device = torch.device('cuda', torch.cuda.current_device())
        if self.model.test_cfg and self.model.test_cfg.get(
                'mode', 'whole') != 'whole':
            raise UsageError('the inference engine runs whole-image '
                             'inference (model.test_cfg.mode="whole"), not '
                             f'{self.model.test_cfg.get("mode")!r}')
        preprocessor = model.data_preprocessor
        self.mean = preprocessor.mean.to(self.device).view(1, -1, 1, 1) \
            if preprocessor._enable_normalize else None
        self.std = preprocessor.std.to(self.device).view(1, -1, 1, 1) \
            if preprocessor._enable_normalize else None
        self.bgr_to_rgb = preprocessor.channel_conversion
        self.pad_val = preprocessor.pad_val
        test_cfg = preprocessor.test_cfg or {}
        self.pad_size = test_cfg.get('size')
        self.size_divisor = test_cfg.get('size_divisor')
        self.align_corners = model.align_corners
        if settings.fold_bn:
            self.model = self._folded(self.model)
        if settings.channels_last:
            if self.model is model:
                self.model = copy.deepcopy(model)
            self.model = self.model.to(memory_format=torch.channels_last)
        forward = self._forward
        if settings.compile != 'none':
            # One graph per padded shape (and per kind of output): images
            # are grouped by padded size and every pass has the full batch
            # (predict), so a dataset of one size compiles once.
            forward = torch.compile(forward, mode=settings.compile,
                                    dynamic=False)
            allow_compiled_variants(COMPILED_VARIANTS)
        self.forward = forward
        # Compile modes that capture CUDA graphs reuse their outputs'
        # memory at the next call.
        self._outputs_reused = self.device.type == 'cuda' and \
            settings.compile in CUDA_GRAPH_MODES
        # Batches from pinned host memory are copied to a GPU on a side
        # stream (_to_device).
        self._copy_stream = torch.cuda.Stream(self.device) \
            if self.device.type == 'cuda' else None
        # The images' own sizes of a pass, on the device, by value: a
        # dataset of one size copies them once, not with every batch.
        self._sizes_on_device: Dict[tuple, torch.Tensor] = {}
        pipeline = test_pipeline_for_arrays(cfg)
        if settings.decode == 'device':
            check_device_decoding(self.device, pipeline)
        self.pipeline = Compose(pipeline)

    def refresh(self) -> None:
        """Take the given model's current weights into the copy that runs
        (after training changed them), keeping the copy's modules, layout
        and so any compiled graph."""
        if self.model is not self.source_model:
            weights = self._folded(self.source_model) \
                if self.settings.fold_bn else self.source_model
            self.model.load_state_dict(weights.state_dict())

    def _folded(self, model: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``model`` with its batch norms folded into their
        convolutions, checked on one small random input."""
        size = self.size_divisor or 32
        example = torch.rand((1, 3, 4 * size, 4 * size),
                             generator=torch.Generator().manual_seed(0))
        with _tf32(self.device, False):  # the check compares in fp32
            folded = fold_batch_norms(
                model, example.to(self.device),
                lambda net, batch: net.decode_head.forward(
                    net.extract_feat(batch)))
        folded.dataset_meta = getattr(model, 'dataset_meta', None)
        return folded

    @classmethod
    def from_config(cls, config, checkpoint: Optional[str],
                    device: str = 'cpu',
                    settings: InferenceSettings = InferenceSettings()
                    ) -> 'Segmenter':
        if not isinstance(config, Config):
            check_config_path(config)
        check_checkpoint(checkpoint)
        cfg = config if isinstance(config, Config) else load_config(config)
        return cls(build_model(cfg, checkpoint, device), cfg, settings,
                   device)

    @property
    def num_classes(self) -> int:
        return self.model.decode_head.num_classes

    def _forward(self, inputs: torch.Tensor, sizes: torch.Tensor,
                 input_shape: tuple, labels: bool
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """uint8 NCHW images, padded to ``input_shape`` (their own sizes
        ``sizes``), to the decode-head scores (float32) and, upsampled to
        ``input_shape`` as ``EncoderDecoder.postprocess_result`` does,
        the logits, or with ``labels`` their argmax (uint8): the
        normalisation, the network and the postprocessing in one graph
        when compiled."""
        inputs = self._normalised(inputs, sizes)
        scores = self.model.decode_head.forward(
            self.model.extract_feat(inputs)).float()
        logits = F.interpolate(scores, size=input_shape, mode='bilinear',
                               align_corners=self.align_corners)
        if labels:
            return scores, logits.argmax(1).to(torch.uint8)
        return scores, logits

    def _precision(self):
        precision = self.settings.precision
        if precision in ('fp32', 'tf32'):
            return _tf32(self.device, precision == 'tf32')
        return torch.autocast(self.device.type, dtype=PRECISIONS[precision])

    def prepare(self, image: np.ndarray) -> dict:
        """The config's test pipeline on one decoded BGR image: ``inputs``
        (3 x H x W uint8 tensor) and ``data_samples`` (its metainfo)."""
        return self.pipeline(dict(img=image))

    def prepare_batch(self, images: Sequence[np.ndarray]
                      ) -> Tuple[List[torch.Tensor], List[dict]]:
        """:meth:`prepare` of each image, as :meth:`predict` takes them:
        the inputs and the metas."""
        prepared = [self.prepare(image) for image in images]
        return ([p['inputs'] for p in prepared],
                [p['data_samples'].metainfo for p in prepared])

    def _normalised(self, inputs: torch.Tensor,
                    sizes: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW on the device, each image at the top left of the
        padded network input, to the network's input as the data
        preprocessor makes it: channel order, mean / std, and the padding
        value outside each image's own (height, width) in ``sizes``
        (N x 2), as if each had been padded alone. The sizes are values,
        not shapes, so a compiled graph serves any images of its padded
        size."""
        if self.bgr_to_rgb and inputs.shape[1] == 3:
            # (Not ``inputs[:, [2, 1, 0]]``: eager, its index list is
            # copied to the device with a blocking copy, so the host would
            # wait for the GPU at every pass.)
            inputs = inputs.flip(1)
        inputs = inputs.float()
        if self.mean is not None:
            inputs = (inputs - self.mean) / self.std
        height, width = inputs.shape[-2:]
        rows = torch.arange(height, device=inputs.device) < sizes[:, :1]
        cols = torch.arange(width, device=inputs.device) < sizes[:, 1:]
        inside = rows[:, None, :, None] & cols[:, None, None, :]
        inputs = torch.where(inside, inputs, float(self.pad_val))
        if self.settings.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def _host_batch(self, images: Sequence[torch.Tensor],
                    shape: tuple) -> torch.Tensor:
        """``images`` (3 x h x w uint8, each at most ``shape``, the
        padded network input) in one N x 3 x H x W tensor, padded at the
        bottom and right with whatever the memory held (the graph sets it
        to the padding value: _normalised), where they are; on the host,
        in pinned memory for a GPU, so that its copy does not block the host.
        (torch's caching host allocator is the ring of pinned buffers: it
        hands a block out again once the copies that read it are done.)"""
        on_host = images[0].device.type == 'cpu'
        pin = on_host and self.device.type == 'cuda'
        if not pin and all(tuple(i.shape[-2:]) == shape for i in images):
            return torch.stack(list(images))
        batch = torch.empty((len(images), images[0].shape[0], *shape),
                            dtype=images[0].dtype, device=images[0].device,
                            pin_memory=pin)
        for offset, image in enumerate(images):
            batch[offset, :, :image.shape[-2], :image.shape[-1]] = image
        return batch

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """``batch`` on the engine's device. From pinned host memory to a
        GPU the copy runs on a side stream, where it overlaps the work
        queued before it (the previous batch's forward pass, in
        :meth:`stream`); the compute stream waits for the copy."""
        if self._copy_stream is None or batch.device.type != 'cpu' or \
                not batch.is_pinned():
            return batch.to(self.device, non_blocking=True)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            on_device = batch.to(self.device, non_blocking=True)
        compute.wait_stream(self._copy_stream)
        # Allocated on the side stream: not to be handed out again before
        # the compute stream is done with it.
        on_device.record_stream(compute)
        return on_device

    def _sizes_tensor(self, sizes: List[tuple]) -> torch.Tensor:
        """``sizes`` (each image's height, width) as an N x 2 int64 tensor
        on the device, kept for the next passes of the same sizes (at
        most :data:`SIZES_KEPT` sets)."""
        key = tuple(sizes)
        kept = self._sizes_on_device.get(key)
        if kept is None:
            kept = torch.tensor(sizes, dtype=torch.int64)
            kept = self._to_device(kept.pin_memory()
                                   if self._copy_stream is not None
                                   else kept)
            if len(self._sizes_on_device) >= SIZES_KEPT:
                self._sizes_on_device.pop(next(iter(self._sizes_on_device)))
            self._sizes_on_device[key] = kept
        return kept

    def _to_host(self, labels: torch.Tensor) -> torch.Tensor:
        """``labels`` on the host: from a GPU one non-blocking copy into
        pinned memory, complete once the compute stream has reached the
        event :meth:`_queue` records after it."""
        if labels.device.type != 'cuda':
            return labels.cpu()
        host = torch.empty(labels.shape, dtype=labels.dtype,
                           pin_memory=True)
        return host.copy_(labels, non_blocking=True)

    def predict(self, inputs: Sequence[torch.Tensor],
                metas: Sequence[dict], keep_scores: bool = False,
                to_host: bool = False) -> List[Prediction]:
        """Labels of prepared images (``inputs[i]`` 3 x H x W uint8, with
        ``metas[i]['ori_shape']``); images of one padded size share a
        forward pass of at most ``batch_size``. A compiled setting runs
        every pass at the full batch size, the last one of a padded size
        filled with copies of its first image (their labels unused), so
        that a dataset of one padded size compiles and autotunes one
        shape. Where every image of a pass keeps its size
        (``ori_shape``), the upsampling and argmax run in the network's
        graph; otherwise images of one size and
        original size share the crop, upsampling and argmax. ``to_host``
        brings the labels to the host, one copy per pass, all waited for
        once at the end."""
        return _wait(self._queue(inputs, metas, keep_scores, to_host))

    def stream(self, batches: Iterable[Tuple[Sequence[torch.Tensor],
                                             Sequence[dict]]],
               keep_scores: bool = False) -> Iterator[List[Prediction]]:
        """:meth:`predict` of each (inputs, metas) of ``batches`` in turn,
        the labels on the host, with one batch in flight: the next batch
        is taken (decoded), copied to the device and its forward pass
        queued before this batch's labels are waited for, so that on a
        GPU the host's work, the copies and the device's work overlap.
        An error in taking a batch (a damaged photo) comes once the batch
        in flight has been handed over, so that its caller can keep it."""
        pending = None
        batches = iter(batches)
        while True:
            try:
                inputs, metas = next(batches)
            except StopIteration:
                break
            except Exception:
                if pending is not None:
                    yield _wait(pending)
                raise
            queued = self._queue(inputs, metas, keep_scores, to_host=True)
            if pending is not None:
                yield _wait(pending)
            pending = queued
        if pending is not None:
            yield _wait(pending)

    @torch.no_grad()
    def _queue(self, inputs: Sequence[torch.Tensor],
               metas: Sequence[dict], keep_scores: bool = False,
               to_host: bool = False
               ) -> Tuple[List[Prediction], Optional[torch.cuda.Event]]:
        """:meth:`predict` without waiting: the predictions, and the event
        after which those brought to the host may be read (None: nothing to
        wait for)."""
        groups = _positions_by_key([
            padded_size(*image.shape[-2:], self.pad_size, self.size_divisor)
            for image in inputs])
        results: List[Optional[Prediction]] = [None] * len(inputs)
        step = self.settings.batch_size
        for input_shape, indices in groups.items():
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                fill = step - len(chunk) \
                    if self.settings.compile != 'none' else 0
                images = [inputs[i] for i in chunk + chunk[:1] * fill]
                own = [tuple(image.shape[-2:]) for image in images]
                sizes = own[:len(chunk)]
                batch = self._to_device(self._host_batch(images,
                                                         input_shape))
                own = self._sizes_tensor(own)
                ori_shapes = [tuple(metas[i]['ori_shape'][:2])
                              for i in chunk]
                in_graph = ori_shapes == sizes
                with self._precision():
                    scores, out = self.forward(batch, own, input_shape,
                                               in_graph)
                if self._outputs_reused:
                    # A CUDA graph's next replay overwrites these.
                    scores, out = scores.clone(), out.clone()
                if in_graph:
                    # (Without the fill's labels.)
                    labels = self._to_host(out[:len(chunk)]) if to_host \
                        else out
                    for offset, (height, width) in enumerate(sizes):
                        results[chunk[offset]] = Prediction(
                            labels[offset, :height, :width],
                            scores[offset] if keep_scores else None,
                            input_shape)
                    continue
                by_shape = _positions_by_key(list(zip(sizes, ori_shapes)))
                for ((height, width), ori_shape), offsets in \
                        by_shape.items():
                    # (Stacked views rather than ``out[offsets]``, whose
                    # index list would be a blocking copy to the device.)
                    part = out[:len(chunk)] if len(offsets) == len(chunk) \
                        else torch.stack([out[i] for i in offsets])
                    part = part[:, :, :height, :width]
                    if ori_shape != (height, width):
                        part = F.interpolate(
                            part, size=ori_shape, mode='bilinear',
                            align_corners=self.align_corners)
                    labels = part.argmax(1).to(torch.uint8)
                    if to_host:
                        labels = self._to_host(labels)
                    for row, offset in enumerate(offsets):
                        results[chunk[offset]] = Prediction(
                            labels[row],
                            scores[offset] if keep_scores else None,
                            input_shape)
        done = None
        if to_host and self.device.type == 'cuda':
            # A blocking event: the waiting thread sleeps rather than
            # spins, leaving the core to the decoding threads.
            done = torch.cuda.Event(blocking=True)
            done.record(torch.cuda.current_stream(self.device))
        return results, done

    def decode(self, jpegs: Sequence[bytes]
               ) -> Tuple[List[torch.Tensor], List[dict]]:
        """JPEG bytes to :meth:`predict`'s inputs and metas: decoded by
        mmcv on the host and prepared by the config's pipeline, or with
        ``decode=device`` decoded on the device in one batch
        (:mod:`fashionseg.inference.jpeg_decoding`)."""
        if self.settings.decode == 'device':
            images = decode_jpegs(jpegs, self.device)
            shapes = [tuple(image.shape[-2:]) for image in images]
            return images, [dict(ori_shape=shape, img_shape=shape)
                            for shape in shapes]
        return self.prepare_batch([mmcv.imfrombytes(data)
                                   for data in jpegs])

    def segment(self, images: Sequence[np.ndarray],
                keep_scores: bool = False, to_host: bool = False
                ) -> List[Prediction]:
        """Decoded BGR images to predictions."""
        return self.predict(*self.prepare_batch(images), keep_scores,
                            to_host)


def checked_segmenter(segmenter: Segmenter, inputs: Sequence[torch.Tensor],
                      metas: Sequence[dict]) -> Tuple[Segmenter, dict]:
    """``segmenter`` if its labels of a sample of prepared images agree
    with eager fp32's (TF32 off) on at least :data:`AGREEMENT_BAR` of the
    pixels, else an eager fp32 segmenter of the same model and batch size;
    and what was checked (``asked``, ``used``, ``agreement``,
    ``checked_images``), for the run's record."""
    settings = segmenter.settings
    record = dict(asked=settings.name(), checked_images=len(inputs),
                  agreement_bar=AGREEMENT_BAR)
    if settings.is_reference:
        return segmenter, dict(record, used=settings.name(), agreement=1.0)
    reference = Segmenter(segmenter.source_model, segmenter.cfg,
                          InferenceSettings(batch_size=settings.batch_size),
                          segmenter.device)
    agreement = label_agreement(
        [p.labels for p in reference.predict(inputs, metas)],
        [p.labels for p in segmenter.predict(inputs, metas)])
    chosen = segmenter if agreement >= AGREEMENT_BAR else reference
    return chosen, dict(record, used=chosen.settings.name(),
                        agreement=agreement)


def describe_check(check: dict, items: str = 'images') -> str:
    """One line for a :func:`checked_segmenter` record, ``items`` naming
    what was checked (images, photos)."""
    verdict = 'kept' if check['used'] == check['asked'] else (
        f'under {check["agreement_bar"]:.1%}, so eager fp32 runs')
    return (f'{check["asked"]} labels {check["agreement"]:.2%} of the first '
            f'{check["checked_images"]} {items}\' pixels as eager fp32 '
            f'does: {verdict}')


def _wait(queued: Tuple[List[Prediction], Optional[torch.cuda.Event]]
          ) -> List[Prediction]:
    """The predictions of :meth:`Segmenter._queue`, once complete."""
    predictions, done = queued
    if done is not None:
        done.synchronize()
    return predictions


def _positions_by_key(keys: Sequence) -> Dict[object, List[int]]:
    """The positions of each distinct key, in order of first appearance."""
    positions: Dict[object, List[int]] = {}
    for position, key in enumerate(keys):
        positions.setdefault(key, []).append(position)
    return positions


def padded_size(height: int, width: int, size: Optional[Sequence] = None,
                size_divisor: Optional[int] = None) -> tuple:
    """The network input of an image, as ``mmseg.models.utils.stack_batch``
    pads it: to ``size`` (height, width), else to the next multiple of
    ``size_divisor``."""
    if size is not None:
        return max(int(size[0]), height), max(int(size[1]), width)
    if size_divisor:
        return (-(-height // size_divisor) * size_divisor,
                -(-width // size_divisor) * size_divisor)
    return height, width


def test_pipeline_for_arrays(cfg: Config) -> list:
    """The config's test pipeline for images already decoded: the loading
    and annotation steps replaced by ``LoadImageFromNDArray`` (as
    ``mmseg.apis.inference_model`` does for arrays)."""
    pipeline = cfg.get('test_pipeline') or \
        cfg.test_dataloader.dataset.pipeline
    steps = [dict(step) for step in pipeline
             if step['type'] not in _LOADING_TRANSFORMS]
    return [dict(type='LoadImageFromNDArray')] + steps


def allow_compiled_variants(count: int) -> None:
    """Let torch keep at least ``count`` compiled variants of a function:
    past its recompile limit (8 by default, shared by every engine of the
    process) it would run each new padded shape eagerly, without a word,
    in a row timed as compiled."""
    config = torch._dynamo.config
    name = 'recompile_limit' if hasattr(config, 'recompile_limit') \
        else 'cache_size_limit'  # torch < 2.6
    setattr(config, name, max(getattr(config, name), count))
    if hasattr(config, 'accumulated_recompile_limit'):
        config.accumulated_recompile_limit = max(
            config.accumulated_recompile_limit, 4 * count)


@contextlib.contextmanager
def _tf32(device: torch.device, allow: bool):
    """TF32 matmuls and convolutions on or off (CUDA only) for a block."""
    if device.type != 'cuda':
        yield
        return
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        # cudnn.flags() would otherwise set benchmark (autotuning) and
        # deterministic to False for the block: the fp32 rows would not
        # run with the process's cuDNN settings as the bf16 rows do.
        with torch.backends.cudnn.flags(
                enabled=True, allow_tf32=allow,
                benchmark=torch.backends.cudnn.benchmark,
                benchmark_limit=torch.backends.cudnn.benchmark_limit,
                deterministic=torch.backends.cudnn.deterministic):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def label_agreement(reference: Sequence[torch.Tensor],
                    labels: Sequence[torch.Tensor],
                    other_shapes_disagree: bool = False) -> float:
    """The fraction of pixels, over all images, where ``labels`` equals
    ``reference``; a label map of another shape than its reference is an
    error, or with ``other_shapes_disagree`` (images decoded by another
    decoder, which may leave a photo unrotated) agrees nowhere."""
    if len(reference) != len(labels):
        raise ValueError(f'{len(labels)} label maps for {len(reference)} '
                         'reference maps')
    equal = total = 0
    for ref, lab in zip(reference, labels):
        if ref.shape != lab.shape:
            if other_shapes_disagree:
                total += ref.numel()
                continue
            raise ValueError(f'label maps of shape {tuple(lab.shape)} and '
                             f'{tuple(ref.shape)} differ')
        equal += int((ref.cpu() == lab.cpu()).sum())
        total += ref.numel()
    return equal / total if total else 1.0

"""mmengine test and validation loops that run the fast inference engine
(:class:`fashionseg.inference.segmenter.Segmenter`) in place of the model's
per-sample ``test_step``: the same labels, batched on the device, with the
engine's precision, memory layout and compile settings.

Configs select them as MMSegmentation selects its loops::

    test_cfg = dict(type='SegmenterTestLoop', precision='fp32')
"""
from typing import Sequence

import torch
from mmengine.model import is_model_wrapper
from mmengine.runner.loops import TestLoop, ValLoop
from mmengine.structures import PixelData
from mmseg.registry import LOOPS

from fashionseg.inference.segmenter import Segmenter, checked_segmenter
from fashionseg.inference.settings import InferenceSettings


class _SegmenterIterMixin:
    """One loop iteration through the engine; the data samples get
    ``pred_sem_seg`` as the model's ``test_step`` sets it and, when
    ``keep_scores``, ``decode_scores`` and ``pad_shape`` for
    :class:`fashionseg.runner.score_hook.SaveDecodeScoresHook`. ``stage``
    names the iteration hooks (``before_test_iter`` or
    ``before_val_iter``)."""

    stage = 'test'

    def _init_engine(self, precision: str, channels_last: bool,
                     compile: str, keep_scores: bool, fold_bn: bool = False,
                     check_agreement: bool = False) -> None:
        batch_size = getattr(self.dataloader, 'batch_size', None) or 1
        self.settings = InferenceSettings(precision, channels_last, compile,
                                          batch_size, fold_bn)
        self.keep_scores = keep_scores
        self.check_agreement = check_agreement
        # What ran: the settings and, when checked, the agreement check.
        self.engine_record = dict(settings=self.settings.name())
        self._segmenter = None
        self._refresh_pending = False

    def segmenter(self, data_batch: dict) -> Segmenter:
        """The engine for the runner's model, built at the first batch
        (after the runner has loaded the weights); with
        ``check_agreement``, a fast setting is kept only if it labels that
        batch as eager fp32 does (:func:`checked_segmenter`)."""
        model = self.runner.model
        model = model.module if is_model_wrapper(model) else model
        if self._segmenter is None or \
                self._segmenter.source_model is not model:
            self._segmenter = Segmenter(model, self.runner.cfg,
                                        self.settings)
            if self.check_agreement:
                self._segmenter, check = checked_segmenter(
                    self._segmenter, data_batch['inputs'],
                    [s.metainfo for s in data_batch['data_samples']])
                self.engine_record = dict(
                    settings=self._segmenter.settings.name(),
                    agreement_check=check)
        elif self._refresh_pending:
            self._segmenter.refresh()
        self._refresh_pending = False
        return self._segmenter

    def run(self):
        # A validation loop runs after every epoch: the engine's copy of
        # the model (channels-last, folded) takes the new weights at the
        # run's first batch, once the hooks (an EMA swapping its weights
        # in) have run and the model is in eval mode.
        self._refresh_pending = True
        return super().run()

    def _predict(self, data_batch: dict) -> Sequence:
        samples = data_batch['data_samples']
        predictions = self.segmenter(data_batch).predict(
            data_batch['inputs'], [s.metainfo for s in samples],
            self.keep_scores)
        for sample, prediction in zip(samples, predictions):
            sample.pred_sem_seg = PixelData(data=prediction.labels[None])
            if self.keep_scores:
                sample.decode_scores = prediction.decode_scores
                sample.set_metainfo(dict(pad_shape=prediction.input_shape))
        return samples

    @torch.no_grad()
    def run_iter(self, idx, data_batch: dict) -> None:
        self.runner.call_hook(f'before_{self.stage}_iter', batch_idx=idx,
                              data_batch=data_batch)
        outputs = self._predict(data_batch)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(f'after_{self.stage}_iter', batch_idx=idx,
                              data_batch=data_batch, outputs=outputs)


@LOOPS.register_module()
class SegmenterTestLoop(_SegmenterIterMixin, TestLoop):
    """``TestLoop`` through the engine; ``keep_scores`` keeps each image's
    decode-head scores for the CRF stage; ``check_agreement`` keeps a fast
    setting only if it labels the first batch as eager fp32 does."""

    def __init__(self, runner, dataloader, evaluator,
                 precision: str = 'fp32', channels_last: bool = False,
                 compile: str = 'none', keep_scores: bool = False,
                 fold_bn: bool = False, check_agreement: bool = False):
        super().__init__(runner, dataloader, evaluator)
        self._init_engine(precision, channels_last, compile, keep_scores,
                          fold_bn, check_agreement)


@LOOPS.register_module()
class SegmenterValLoop(_SegmenterIterMixin, ValLoop):
    """``ValLoop`` through the engine: validation in batches of the
    dataloader's size, with the labels of one image at a time."""

    stage = 'val'

    def __init__(self, runner, dataloader, evaluator,
                 precision: str = 'fp32', channels_last: bool = False,
                 compile: str = 'none', fold_bn: bool = False):
        super().__init__(runner, dataloader, evaluator)
        self._init_engine(precision, channels_last, compile, False, fold_bn)

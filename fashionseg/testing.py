"""Testing a trained checkpoint: the logic behind ``tools/test.py``.

Writes ``metrics.json`` (pixel accuracy, mean IoU, mean accuracy, per-class
IoU and accuracy, in percent, MMSegmentation's definitions; paper section 5)
and, with an output folder, the class scores of every test image for the CRF
stage (:mod:`fashionseg.scores`). Beside ``metrics.json`` go the per-image
confusion matrices (``metrics.confusion.npz``, :mod:`fashionseg.confusion`)
from which the report recomputes every figure.
"""
import json
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.runner import Runner

from .confusion import confusion_path, save_confusions
from .io import write_text_atomic
from .metrics import ClassIoUMetric
from .training import (configure_cpu_ddp, init_cpu_distributed, load_config,
                       set_data_root)

METRICS_FILE = 'metrics.json'


def configure_testing(config: str, checkpoint: str,
                      work_dir: Optional[str] = None,
                      out: Optional[str] = None,
                      cfg_options: Optional[dict] = None,
                      launcher: str = 'none',
                      split: Optional[str] = None,
                      metrics_out: Optional[str] = None,
                      data_root: Optional[str] = None) -> Config:
    """The config of a test run; ``split`` tests on another split of the
    converted dataset (``val`` for the CRF search); ``metrics_out`` is the
    metrics file (default: ``metrics.json`` in ``out`` or the work dir)."""
    cfg = load_config(config, work_dir, cfg_options, launcher)
    set_data_root(cfg, data_root)
    if split is not None:
        cfg.test_dataloader.dataset.data_prefix = dict(
            img_path=f'img_dir/{split}', seg_map_path=f'ann_dir/{split}')
    cfg.load_from = checkpoint
    if launcher != 'none' and not torch.cuda.is_available():
        configure_cpu_ddp(cfg)
    # The per-class figures are part of the result, not only of the log.
    cfg.test_evaluator = dict(cfg.test_evaluator, type='ClassIoUMetric')
    if out is not None:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='SaveDecodeScoresHook', out_dir=out)]
    cfg.metrics_out = metrics_out or osp.join(
        out if out is not None else cfg.work_dir, METRICS_FILE)
    return cfg


def _percent(value):
    """A metric in percent with two decimals, as MMSegmentation rounds it;
    NaN (a class in neither prediction nor ground truth) as null."""
    value = float(value)
    return None if value != value else round(value, 2)


def metrics_record(metrics: dict, classes) -> dict:
    """``ClassIoUMetric``'s flat metrics as the harness's metrics JSON."""
    return {
        'aAcc': _percent(metrics['aAcc']),
        'mIoU': _percent(metrics['mIoU']),
        'mAcc': _percent(metrics['mAcc']),
        'per_class': {
            name: {'IoU': _percent(metrics[f'IoU.{name}']),
                   'Acc': _percent(metrics[f'Acc.{name}'])}
            for name in classes},
    }


def run_test(cfg: Config, config: str, checkpoint: str) -> dict:
    init_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    classes = runner.test_dataloader.dataset.metainfo['classes']
    record = dict(metrics_record(metrics, classes), config=config,
                  checkpoint=checkpoint)
    if get_rank() == 0:
        metric = next(m for m in runner.test_loop.evaluator.metrics
                      if isinstance(m, ClassIoUMetric))
        stems, matrices = zip(*metric.per_image)
        save_confusions(confusion_path(cfg.metrics_out), stems, matrices,
                        classes)
        write_text_atomic(cfg.metrics_out,
                          json.dumps(record, indent=2) + '\n')
    return record

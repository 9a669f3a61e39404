"""Testing a trained checkpoint: the logic behind ``tools/test.py``.

Writes ``metrics.json`` (pixel accuracy, mean IoU, mean accuracy, per-class
IoU and accuracy, in percent, MMSegmentation's definitions; paper section 5)
and, with an output folder, the class scores of every test image for the CRF
stage (:mod:`fashionseg.runner.score_hook`). Images go through the fast
inference engine (:class:`fashionseg.inference.loops.
SegmenterTestLoop`), eager fp32 unless asked otherwise, so the metrics of
record are computed as MMSegmentation computes them; the weights are
loaded strictly (:func:`fashionseg.checkpoints.loading.
load_weights_strictly`). Beside ``metrics.json`` go the
per-image confusion matrices (``metrics.confusion.npz``,
:mod:`fashionseg.evaluation.confusion`)
from which the report recomputes every figure.
"""
import json
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.model import is_model_wrapper

from fashionseg.checkpoints.loading import load_weights_strictly
from fashionseg.config_checks import check_checkpoint, check_dataset_folders
from fashionseg.evaluation.confusion import confusion_path, save_confusions
from fashionseg.evaluation.iou_metric import ClassIoUMetric
from fashionseg.evaluation.metrics_file import metrics_record
from fashionseg.inference.segmenter import describe_check
from fashionseg.inference.settings import InferenceSettings
from fashionseg.runner.run_config import (add_custom_hooks, build_runner,
                                          configure_cpu_ddp,
                                          init_cpu_distributed,
                                          load_run_config)
from fashionseg.utils.atomic_write import write_text_atomic
from fashionseg.utils.output_folder import (OutputFolderError,
                                            check_output_folder,
                                            check_result_file,
                                            is_confusion_file,
                                            is_test_metrics_file)

METRICS_FILE = 'metrics.json'


def configure_testing(config: str, checkpoint: str,
                      work_dir: Optional[str] = None,
                      out: Optional[str] = None,
                      cfg_options: Optional[dict] = None,
                      launcher: str = 'none',
                      split: Optional[str] = None,
                      metrics_out: Optional[str] = None,
                      data_root: Optional[str] = None,
                      settings: InferenceSettings = InferenceSettings(),
                      max_images: Optional[int] = None,
                      check_agreement: bool = False) -> Config:
    """The config of a test run; ``split`` tests on another split of the
    converted dataset (``val`` for the CRF search); ``metrics_out`` is the
    metrics file (default: ``metrics.json`` in ``out`` or the work dir);
    ``settings`` the inference engine's (precision, layout, folding,
    compile, batch size), with ``check_agreement`` kept only if they
    label the first batch as eager fp32 does; ``max_images`` tests the
    first images of the split."""
    check_checkpoint(checkpoint)
    cfg = load_run_config(config, work_dir, cfg_options, launcher,
                          data_root, max_images, ('test_dataloader',))
    if split is not None:
        cfg.test_dataloader.dataset.data_prefix = dict(
            img_path=f'img_dir/{split}', seg_map_path=f'ann_dir/{split}')
        # One name per split, so that testing several splits in one
        # process gives each Runner its own logger and visualizer.
        cfg.experiment_name = f'{osp.splitext(osp.basename(config))[0]}_' \
                              f'{split}'

    # Loaded strictly by run_test, not by the Runner (which only warns).
    check_dataset_folders(cfg, ('test_dataloader',))
    cfg.load_from = None
    cfg.checkpoint = checkpoint
    cfg.test_cfg = dict(type='SegmenterTestLoop',
                        precision=settings.precision,
                        channels_last=settings.channels_last,
                        compile=settings.compile,
                        fold_bn=settings.fold_bn,
                        check_agreement=check_agreement,
                        keep_scores=out is not None)
    cfg.test_dataloader.batch_size = settings.batch_size
    # One pass over the split: workers kept alive would only outlive the
    # Runner (with several splits in one process, the first split's
    # workers were torn down mid-queue and printed a QueueFeederThread
    # traceback on a GPU machine).
    cfg.test_dataloader.persistent_workers = False
    cfg.test_dataloader.pin_memory = torch.cuda.is_available()
    if launcher != 'none' and not torch.cuda.is_available():
        configure_cpu_ddp(cfg)
    # Testing logs no training curves: leave DVCLive (about 2 s to start)
    # out.
    cfg.visualizer.vis_backends = [
        backend for backend in cfg.visualizer.get('vis_backends', [])
        if backend['type'] != 'SafeDVCLiveVisBackend']
    # The per-class figures are part of the result, not only of the log.
    cfg.test_evaluator = dict(cfg.test_evaluator, type='ClassIoUMetric')
    cfg.metrics_out = metrics_out or osp.join(
        out if out is not None else cfg.work_dir, METRICS_FILE)
    # Before any work: a metrics file lands on nothing it would lose.
    data_root = cfg.test_dataloader.dataset.get('data_root')
    check_result_file(
        cfg.metrics_out, 'tools/test.py', '--metrics', is_test_metrics_file,
        inputs=[data_root, checkpoint, config],
        beside={confusion_path(cfg.metrics_out): is_confusion_file},
        folders={'--out': out, '--work-dir': cfg.work_dir})
    if out is not None:
        if os.path.abspath(out) == os.path.abspath(cfg.work_dir):
            raise OutputFolderError(
                f'--out {out} is the work dir, where the runner writes its '
                'logs and config; give the scores a folder of their own')
        # Checked here too, before any split runs (the score hook claims
        # it when its split starts).
        check_output_folder(out, 'tools/test.py', inputs=[data_root])
    if out is not None:
        add_custom_hooks(cfg, dict(
            type='SaveDecodeScoresHook', out_dir=out,
            keep=[cfg.metrics_out, str(confusion_path(cfg.metrics_out))]))
    return cfg


def run_test(cfg: Config, config: str, checkpoint: str) -> dict:
    init_cpu_distributed(cfg)
    runner = build_runner(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) \
        else runner.model
    load_weights_strictly(model, checkpoint, config)
    metrics = runner.test()
    classes = runner.test_dataloader.dataset.metainfo['classes']
    engine = runner.test_loop.engine_record
    record = dict(metrics_record(metrics, classes), config=config,
                  checkpoint=checkpoint, engine=engine)
    if get_rank() == 0:
        metric = next(m for m in runner.test_loop.evaluator.metrics
                      if isinstance(m, ClassIoUMetric))
        stems, matrices = zip(*metric.per_image)
        record = dict(metrics_record(metrics, classes, matrices),
                      config=config, checkpoint=checkpoint, engine=engine)
        if cfg.get('max_images'):
            record['max_images'] = cfg.max_images
        save_confusions(confusion_path(cfg.metrics_out), stems, matrices,
                        classes)
        write_text_atomic(cfg.metrics_out,
                          json.dumps(record, indent=2) + '\n')
    return record


def describe_engine(engine: dict) -> str:
    """One line for the engine record of a test run (``run_test``'s
    ``engine``): the setting that ran and, when checked, the check."""
    check = engine.get('agreement_check')
    if not check:
        return engine['settings']
    return f'{engine["settings"]} ({describe_check(check)})'

"""tools/train.py: every config trains and validates on CPU; DDP; the
pretrained-weights rule; the run record."""
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO
from training_helpers import (CONFIG_DIR, DATASETS, MODELS,
                              build_converted_datasets, small_run_options)

from fashionseg.checkpoints.pretrained import PretrainedWeightsMissing
from fashionseg.errors import UsageError
from fashionseg.runner.training import (configure_training, train,
                                        with_earlier_sessions)


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
    return build_converted_datasets(tmp_path_factory.mktemp('datasets'))


@pytest.mark.parametrize('model', MODELS)
# The CCP configs train end to end in the demo pipeline
# (tests/pipeline/test_pipeline.py), through mmseg_configs/demo/, which
# inherit them.
@pytest.mark.parametrize('dataset', [d for d in DATASETS if d != 'ccp'])
def test_config_trains_two_iterations_and_validates(model, dataset, datasets,
                                                    tmp_path):
    config = str(CONFIG_DIR / f'{model}_{dataset}.py')
    cfg = configure_training(
        config, work_dir=str(tmp_path / 'work'), pretrained=False,
        cfg_options=small_run_options(model, datasets[dataset]))
    runner = train(cfg, config)
    assert runner.iter == 2  # 4 images, batch 2, one epoch
    history = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(history) == 2 and all(v == v for v in history)
    # Validated after the epoch; the best-accuracy checkpoint is kept.
    assert 0 <= runner.message_hub.get_info('best_score') <= 100
    assert list((tmp_path / 'work').glob('best_aAcc_epoch_1.pth'))
    # Curves logged to DVCLive in the work dir.
    assert (tmp_path / 'work' / 'dvclive' / 'plots' / 'metrics' /
            'loss.tsv').is_file()


def test_run_record(datasets, tmp_path):
    pipeline = (REPO / 'dvc.yaml').read_bytes()
    config = str(CONFIG_DIR / 'fpn_x101_ccp.py')
    cfg = configure_training(
        config, work_dir=str(tmp_path), pretrained=False, seed=7,
        cfg_options=small_run_options('fpn_x101', datasets['ccp']))
    train(cfg, config)
    record = json.loads((tmp_path / 'run_record.json').read_text())
    assert record['seed'] == 7
    assert record['pretrained'] == {
        'loaded': False,
        'requested_by_config': ['open-mmlab://resnext101_32x4d'],
        'no_pretrained_flag': True, 'files': []}
    assert record['device']['type'] == 'cpu'
    # The configs' cuDNN policy (MMSegmentation's: autotuning on).
    assert record['cudnn_benchmark'] is True
    assert len(record['git']['commit']) == 40
    assert record['packages']['mmsegmentation'] == '1.2.2'
    assert os.path.isfile(record['resolved_config'])
    # Logging to DVCLive leaves the project's pipeline file alone.
    assert (REPO / 'dvc.yaml').read_bytes() == pipeline
    assert (tmp_path / 'dvclive' / 'dvc.yaml').is_file()


def test_missing_pretrained_weights_stop_the_run(datasets, tmp_path,
                                                monkeypatch):
    # An empty torch hub cache and a download that cannot succeed.
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    import torch.hub
    monkeypatch.setattr(torch.hub, 'download_url_to_file',
                        lambda *a, **k: (_ for _ in ()).throw(
                            OSError('network is unreachable')))
    config = str(CONFIG_DIR / 'pspnet_r101_cfpd.py')
    cfg = configure_training(config, work_dir=str(tmp_path / 'work'),
                             data_root=str(datasets['cfpd']))
    with pytest.raises(PretrainedWeightsMissing) as info:
        train(cfg, config)
    message = str(info.value)
    assert 'open-mmlab://resnet101_v1c' in message
    assert 'resnet101_v1c-e67eebb6.pth' in message
    assert '--no-pretrained' in message
    assert not (tmp_path / 'work' / 'run_record.json').exists()


def test_a_split_smaller_than_a_batch_stops_before_training(
        datasets, tmp_path):
    """With the last, smaller batch dropped, an epoch of 3 images at batch
    4 would train nothing and save the untrained model as the best."""
    config = str(CONFIG_DIR / 'fcn_r101_ccp.py')
    cfg = configure_training(
        config, work_dir=str(tmp_path / 'work'), pretrained=False,
        cfg_options=small_run_options('fcn_r101', datasets['ccp'],
                                      batch_size=4), max_images=3)
    with pytest.raises(UsageError, match='holds 3 images, fewer than one '
                       'batch of 4 per process'):
        train(cfg, config)
    assert not (tmp_path / 'work' / 'run_record.json').exists()
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_ddp_two_processes_gloo(datasets, tmp_path):
    options = small_run_options('fcn_r101', datasets['ccp'], batch_size=1)
    args = [f'{k}={json.dumps(v).replace(" ", "")}'
            if isinstance(v, list) else f'{k}={v}'
            for k, v in options.items()]
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
         '2', '--master_port', '29531', 'tools/train.py',
         str(CONFIG_DIR / 'fcn_r101_ccp.py'), '--launcher', 'pytorch',
         '--no-pretrained', '--work-dir', str(tmp_path),
         '--speedups', 'channels-last', '--cfg-options', *args],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / 'run_record.json').read_text())
    assert record['world_size'] == 2 and record['launcher'] == 'pytorch'
    # DDP was built on the channels-last model: its gradient buckets have
    # the weights' layout.
    assert record['training_speedups'] == ['channels-last']
    assert 'Grad strides do not match' not in result.stderr
    # Two processes at batch 1: two images per step, not the paper's five,
    # which the record and the log say.
    assert record['global_batch_size'] == 2
    assert record['paper_global_batch_size'] == 5
    log_text = next(tmp_path.glob('*/*.log')).read_text()
    assert "global batch size 2 (1 per process x 2 processes) differs " \
        "from the paper's 5" in log_text
    # 4 images over 2 processes at batch 1: two iterations each.
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'Epoch(train) [1][2/2]' in log
    assert (tmp_path / 'epoch_1.pth').is_file()


def test_training_benchmark_reports_both_rates(datasets, tmp_path):
    from fashionseg.benchmarks.training import benchmark_training
    options = small_run_options('fcn_r101', datasets['fashionista'])
    # Without warm-up the clock starts with the first batch's loading.
    result = benchmark_training(str(CONFIG_DIR / 'fcn_r101_fashionista.py'),
                                str(tmp_path), iters=2, warmup=0,
                                cfg_options=options)
    assert result['batch_size'] == 2 and result['iterations_timed'] == 2
    # Counted at the padded input: a multiple of 32 holding the image.
    assert all(padded % 32 == 0 and padded - 32 < size <= padded
               for size, padded in zip(result['image_size'],
                                       result['input_size']))
    assert result['cudnn_benchmark'] is None  # (no GPU)
    assert result['images_per_second_model_only'] > 0
    assert result['images_per_second_full_loop'] > 0
    assert result['full_loop_fraction_of_model_only'] == pytest.approx(
        result['images_per_second_full_loop'] /
        result['images_per_second_model_only'], rel=0.01)
    # The operations a step costs are counted; the CPU has no datasheet
    # peak to compare them with.
    assert result['training_gflop_per_image'] > 0
    assert result['peak_tflops'] is None
    assert result['fraction_of_peak_full_loop'] is None


def test_a_resumed_runs_record_keeps_every_earlier_session(tmp_path):
    """Three sessions of one run (two resumes): the record is the last
    session's, with the two before it in order; an unreadable earlier
    record is replaced, not a reason to stop the training."""
    path = tmp_path / 'run_record.json'
    path.write_text(json.dumps(dict(session=1, training_speedups=[])))
    second = with_earlier_sessions(
        dict(session=2, training_speedups=['channels-last']), str(path))
    path.write_text(json.dumps(second))
    third = with_earlier_sessions(dict(session=3), str(path))
    assert third['session'] == 3
    assert [s['session'] for s in third['earlier_sessions']] == [1, 2]
    assert third['earlier_sessions'][1]['training_speedups'] == [
        'channels-last']
    assert 'earlier_sessions' not in third['earlier_sessions'][1]
    path.write_text('{"session": 1, ')  # cut off mid-write
    assert with_earlier_sessions(dict(session=2), str(path)) == dict(
        session=2)
    assert with_earlier_sessions(
        dict(session=1), str(tmp_path / 'none.json')) == dict(session=1)


def test_a_session_resuming_a_finished_run_is_told_apart():
    from mmengine.config import Config

    from fashionseg.runner.run_state import resumes_finished_run
    for load_from, loop, finished in (
            ('w/epoch_100.pth', dict(max_epochs=100), True),
            ('w/epoch_99.pth', dict(max_epochs=100), False),
            ('w/iter_800.pth', dict(max_iters=800), True),
            ('w/iter_8.pth', dict(max_epochs=100), False),
            ('w/best_aAcc_epoch_3.pth', dict(max_epochs=3), True)):
        cfg = Config(dict(resume=True, load_from=load_from,
                          train_cfg=loop))
        assert resumes_finished_run(cfg) is finished, load_from
    assert not resumes_finished_run(Config(dict(
        resume=False, load_from='w/epoch_100.pth',
        train_cfg=dict(max_epochs=100))))

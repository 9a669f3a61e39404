"""What a training run writes lands only where nothing is lost: its work
dir is new, empty or a run's; a run that does not resume moves an earlier
run's checkpoints aside; the DVCLive folder and the exported weights never
replace a user's files; and a run that would train nothing is refused."""
import json

import pytest
import torch
from conftest import REPO
from raw_formats import BUNDLED_CCP

from custom_datasets.convert import convert_release
from fashionseg.errors import UsageError
from fashionseg.runner.run_state import FINGERPRINT_FILE, start_afresh
from fashionseg.runner.training import configure_training

CONFIG = str(REPO / 'mmseg_configs' / 'demo' / 'fpn_x101_ccp.py')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('work_dirs') / 'ccp'
    convert_release('ccp', BUNDLED_CCP, root, 64)
    return root


def _configure(data, work_dir, config=CONFIG, cfg_options=None, **kwargs):
    return configure_training(config, str(work_dir), cfg_options or {},
                              pretrained=False, data_root=str(data),
                              **kwargs)


def test_a_folder_of_other_files_is_refused_as_a_work_dir(data, tmp_path):
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'notes.txt').write_text('mine')
    (mine / 'run_record.json').write_text('{"my": "record"}')
    with pytest.raises(UsageError, match=f'--work-dir {mine} holds files a '
                       'training run did not write'):
        _configure(data, mine)
    with pytest.raises(UsageError, match='lies within the input'):
        _configure(data, data / 'work')
    # The config's own folder, where the resolved copy would replace it.
    config = tmp_path / 'cfgs' / 'fpn_x101_ccp.py'
    config.parent.mkdir()
    config.write_text(f"_base_ = ['{CONFIG}']\n")
    with pytest.raises(UsageError, match='holds the config .* which the run '
                       'would replace'):
        _configure(data, config.parent, str(config))
    assert config.read_text() == f"_base_ = ['{CONFIG}']\n"
    # A run's own resolved copy, given back to resume it, is rewritten.
    (config.parent / FINGERPRINT_FILE).write_text('an earlier run\n')
    _configure(data, config.parent, str(config), resume=True)
    assert sorted(p.name for p in mine.iterdir()) == ['notes.txt',
                                                      'run_record.json']


def test_a_dvclive_folder_of_other_files_is_refused(data, tmp_path):
    live = tmp_path / 'live'
    (live / 'plots' / 'metrics').mkdir(parents=True)
    (live / 'metrics.json').write_text('{}')
    _configure(data, tmp_path / 'a', dvclive_dir=str(live))  # DVCLive's
    (live / 'report-of-mine.md').write_text('mine')
    with pytest.raises(UsageError, match=f'--dvclive-dir {live} holds files '
                       'DVCLive did not write'):
        _configure(data, tmp_path / 'b', dvclive_dir=str(live))


def test_a_fresh_run_moves_an_earlier_runs_checkpoints_aside(data,
                                                             tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_1.pth').write_bytes(b'an earlier run')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    (work / 'notes.txt').write_text('mine')
    (work / 'best_aAcc_epoch_1.pth').write_bytes(b'the weights to start from')
    cfg = _configure(data, work, cfg_options={
        'load_from': str(work / 'best_aAcc_epoch_1.pth')})
    assert not cfg.resume and cfg.fresh_run_fingerprint
    # Nothing moves before the run's checks have passed (train() moves
    # them once its runner is built), and then the checkpoint it starts
    # from stays.
    assert (work / 'epoch_1.pth').is_file()
    start_afresh(cfg, cfg.fresh_run_fingerprint)
    assert (work / 'stale-1' / 'epoch_1.pth').read_bytes() == \
        b'an earlier run'
    assert (work / 'best_aAcc_epoch_1.pth').is_file()
    assert (work / 'notes.txt').read_text() == 'mine'
    assert (work / FINGERPRINT_FILE).read_text().strip() == \
        cfg.fresh_run_fingerprint
    # --resume starts nothing afresh.
    assert _configure(data, work, resume=True).fresh_run_fingerprint is None


def test_the_rank_is_read_as_each_launcher_sets_it(monkeypatch):
    from fashionseg.runner.run_config import launcher_rank
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK'):
        monkeypatch.delenv(name, raising=False)
    assert launcher_rank('slurm') == 0
    monkeypatch.setenv('SLURM_PROCID', '3')
    assert launcher_rank('slurm') == 3 and launcher_rank('pytorch') == 0
    monkeypatch.setenv('OMPI_COMM_WORLD_RANK', '2')
    assert launcher_rank('mpi') == 2
    monkeypatch.setenv('RANK', '1')
    assert launcher_rank('slurm') == 1  # torchrun's, where it is set


def test_exported_weights_replace_only_earlier_exports(data, tmp_path):
    notes = tmp_path / 'notes.pth'
    notes.write_text('mine')
    checkpoint = tmp_path / 'epoch_3.pth'
    torch.save(dict(state_dict={}, meta={}, optimizer={}, message_hub={}),
               checkpoint)
    for path, why in ((notes, 'exists and is not a result tools/train.py '
                       'wrote'),
                      (checkpoint, 'exists and is not a result'),
                      (data / 'dataset.json', 'lies within the input'),
                      (tmp_path, 'is a folder')):
        with pytest.raises(UsageError, match=f'--export-best {path}.*{why}'):
            _configure(data, tmp_path / 'w', export_best=str(path))
    assert notes.read_text() == 'mine'
    assert json.loads((data / 'dataset.json').read_text())['classes']
    # An earlier export, whose meta quotes the run's config (mmengine's
    # checkpoints keep it), optimiser settings and all.
    export = tmp_path / 'model.pth'
    torch.save(dict(state_dict={}, meta=dict(
        cfg="optim_wrapper = dict(optimizer=dict(type='Adam'))")), export)
    _configure(data, tmp_path / 'w', export_best=str(export))


@pytest.mark.parametrize('option', [dict(max_epochs=0), dict(max_epochs=-1),
                                    dict(max_epochs='abc')])
def test_a_run_that_would_train_nothing_is_refused(data, tmp_path, option):
    key, value = next(iter(option.items()))
    with pytest.raises(UsageError, match=f'train_cfg.{key} must be a whole '
                       f'number of at least 1, not {value!r}'):
        configure_training(CONFIG, str(tmp_path / 'w'),
                           {f'train_cfg.{key}': value}, pretrained=False,
                           data_root=str(data))


@pytest.mark.parametrize('key,value,message', [
    ('optim_wrapper.optimizer.lr', 'abc', 'optim_wrapper.optimizer.lr must '
     "be a finite number of at least 0, not 'abc'"),
    ('optim_wrapper.optimizer.lr', -1, 'optim_wrapper.optimizer.lr must be '
     'a finite number of at least 0, not -1'),
    ('optim_wrapper.optimizer.lr', float('inf'), 'not inf'),
    ('optim_wrapper.optimizer.weight_decay', -0.1, 'weight_decay must be'),
    ('train_cfg.val_interval', 0, 'train_cfg.val_interval must be a whole '
     'number of at least 1, not 0'),
    ('train_dataloader.num_workers', -2, 'train_dataloader.num_workers must '
     'be a whole number of at least 0, not -2'),
    ('train_dataloader.batch_size', 0, 'train_dataloader.batch_size must be '
     'a whole number of at least 1, not 0'),
])
def test_a_setting_torch_or_mmengine_would_refuse_is_named_first(
        data, tmp_path, key, value, message):
    """Values that torch's optimiser or loader, or mmengine's loop,
    refuse only once training has started, with a traceback."""
    with pytest.raises(UsageError, match=message):
        _configure(data, tmp_path / 'w', cfg_options={key: value})


@pytest.mark.parametrize('key,value,message', [
    ('optim_wrapper.optimizer.type', 'Adamm', "optim_wrapper.optimizer.type "
     "'Adamm' is no optimiser torch or mmengine knows; did you mean 'Adam'"),
    ('optim_wrapper.optimizer.betas', 'abc', 'optim_wrapper cannot be built'),
    ('model.backbone.depth', 7, r'its runner cannot be built \(KeyError: '
     'invalid depth 7 for resnet\\)'),
    ('train_dataloader.dataset.pipeline', 5, 'train_dataloader cannot be '
     r"built \(TypeError: 'int' object is not iterable\)"),
])
def test_a_rerun_with_a_setting_its_classes_refuse_moves_nothing(
        data, tmp_path, key, value, message):
    """A finished run's work dir, run again with a setting that the
    optimiser's, the model's or the loader's classes refuse: one line
    naming it, and the earlier run's checkpoints stay where they were
    (they were moved aside before mmengine built the optimiser)."""
    from fashionseg.runner.training import train
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_1.pth').write_bytes(b'an earlier run')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    cfg = _configure(data, work, cfg_options={key: value})
    with pytest.raises(UsageError, match=message):
        train(cfg, CONFIG)
    assert (work / 'epoch_1.pth').read_bytes() == b'an earlier run'
    assert not (work / 'stale-1').exists()


@pytest.mark.parametrize('speedups', [[], ['no-host-sync']])
def test_a_run_whose_loss_is_no_longer_finite_stops(data, tmp_path,
                                                    speedups):
    """A learning rate of 1e30 makes the loss NaN within an epoch: the
    run stops with one line that says where, at an iteration the logger
    prints (where the loss is on the host already, with no-host-sync
    too), and exports nothing."""
    from fashionseg.errors import TrainingDiverged
    from fashionseg.runner.training import train
    export = tmp_path / 'model.pth'
    cfg = _configure(data, tmp_path / 'w', cfg_options={
        'optim_wrapper.optimizer.lr': 1e30, 'train_cfg.max_epochs': 3,
        'train_dataloader.dataset.indices': 4,
        'train_dataloader.batch_size': 2,
        'default_hooks.logger.interval': 1}, speedups=speedups)
    with pytest.raises(TrainingDiverged, match=r'the training loss is nan '
                       r'at iteration \d+ \(epoch 1\): the run diverged, and'
                       r' stops. Lower the learning rate \(1e\+30\)'):
        train(cfg, CONFIG, export_best=str(export))
    assert not export.exists()


def test_a_non_finite_loss_stops_every_process_and_fp16_after_a_few(
        monkeypatch):
    """The hook on its own: a NaN in another process of a distributed
    run stops this one too (the processes agree through an all-reduce);
    under fp16's loss scaling, whose scaler skips such steps, only the
    fifth logged non-finite loss in a row stops the run, and a finite one
    starts the count again."""
    from mmengine.hooks import LoggerHook
    from mmengine.logging import MessageHub

    from fashionseg.errors import TrainingDiverged
    from fashionseg.runner import run_state

    class Runner:
        def __init__(self, scaled):
            self.hooks = [LoggerHook(interval=1)]
            self.message_hub = MessageHub(f'finite-{scaled}')
            self.train_dataloader = [None] * 100
            self.iter = self.epoch = 0
            self.work_dir = 'w'
            self.optim_wrapper = type('Wrapper', (), dict(
                loss_scaler=object() if scaled else None,
                get_lr=lambda self: {'lr': [1e-4]}))()

    def check(hook, runner, loss):
        runner.message_hub.update_scalar('train/loss', loss)
        hook.after_train_iter(runner, runner.iter)
        runner.iter += 1

    hook, runner = run_state.FiniteLossHook(), Runner(scaled=True)
    hook.before_train(runner)
    for loss in [float('nan')] * 4 + [1.0] + [float('inf')] * 4:
        check(hook, runner, loss)
    with pytest.raises(TrainingDiverged, match=r'the training loss is inf '
                       r'at iteration 10 \(epoch 1\) for 5 logged '
                       r'iterations in a row \(fp16'):
        check(hook, runner, float('inf'))

    monkeypatch.setattr(run_state, 'is_distributed', lambda: True)
    monkeypatch.setattr(run_state, 'all_reduce',
                        lambda flag: flag.add_(1))  # another's NaN
    hook, runner = run_state.FiniteLossHook(), Runner(scaled=False)
    hook.before_train(runner)
    with pytest.raises(TrainingDiverged, match='the training loss is not '
                       'finite in another process at iteration 1 '):
        check(hook, runner, 2.0)


def test_a_checkpoint_that_cannot_be_resumed_is_named_first(data, tmp_path):
    """--resume from what mmengine would resume from: named, with why,
    before the run writes its record or trains (mmengine failed with a
    KeyError or started afresh)."""
    from fashionseg.errors import DataError
    from fashionseg.runner.run_state import resume_checkpoint
    work = tmp_path / 'work'
    cfg = _configure(data, work, resume=True)
    assert resume_checkpoint(cfg) is None  # nothing to resume: afresh
    pointer = work / 'last_checkpoint'
    work.mkdir(exist_ok=True)
    pointer.write_bytes(b'\xff\xfe\x00')
    with pytest.raises(DataError, match=f'{pointer}: not the name of a '
                       'checkpoint'):
        resume_checkpoint(cfg)
    pointer.write_text(str(work / 'epoch_9.pth'))
    with pytest.raises(DataError, match=f'{pointer} names .*epoch_9.pth, '
                       'which is not a file'):
        resume_checkpoint(cfg)
    exported = work / 'epoch_9.pth'
    torch.save(dict(state_dict={'w': torch.ones(2)}, meta={}), exported)
    with pytest.raises(DataError, match='not a training checkpoint to '
                       'resume from .*no message_hub, optimizer'):
        resume_checkpoint(cfg)
    exported.write_text('not a checkpoint')
    with pytest.raises(DataError, match='not a training checkpoint'):
        resume_checkpoint(cfg)
    torch.save(dict(state_dict={'w': torch.ones(2)}, meta=dict(epoch=9),
                    message_hub={}, optimizer={}), exported)
    assert resume_checkpoint(cfg) == str(exported)


def test_a_resume_that_fails_in_mmengine_names_the_checkpoint():
    from types import SimpleNamespace

    from fashionseg.errors import DataError
    from fashionseg.runner.training import _name_resume_failures

    def load_or_resume():
        raise ValueError("loaded state dict contains a parameter group that "
                         "doesn't match the size of optimizer's group\nmore")
    runner = SimpleNamespace(load_or_resume=load_or_resume)
    _name_resume_failures(runner, 'work/epoch_3.pth')
    with pytest.raises(DataError, match=r"work/epoch_3.pth: the run cannot "
                       r"resume from it \(ValueError: loaded state dict .*"
                       r"group\); it is a checkpoint of another model"):
        runner.load_or_resume()


def test_another_datasets_folder_or_class_count_is_refused(data, tmp_path):
    """A CFPD config given the CCP folder, a num_classes that is not the
    dataset's, or a split with no images: one error before training (they
    trained against the wrong labels, or failed deep in a batch)."""
    cfpd = str(REPO / 'mmseg_configs' / 'fpn_x101_cfpd.py')
    with pytest.raises(UsageError, match=f'reads {data}, a converted ccp '
                       'dataset of 59 classes, not the cfpd dataset of 23'):
        _configure(data, tmp_path / 'a', cfpd)
    with pytest.raises(UsageError, match='model.decode_head.num_classes is '
                       '5, but the ccp dataset has 59 classes'):
        configure_training(CONFIG, str(tmp_path / 'b'),
                           {'model.decode_head.num_classes': 5},
                           pretrained=False, data_root=str(data))
    import shutil
    empty = tmp_path / 'ccp'
    shutil.copytree(data, empty)
    for image in (empty / 'img_dir' / 'train').iterdir():
        image.unlink()
    with pytest.raises(UsageError, match=f'{empty / "img_dir" / "train"} '
                       'is empty'):
        _configure(empty, tmp_path / 'c')


@pytest.mark.parametrize('text, why', [
    ("model = dict(decode_head=dict(num_clases=59))\n",
     "model.decode_head has no setting 'num_clases' .*did you mean "
     "model.decode_head.num_classes"),
    ("train_cfg = dict(max_epoch=1)\n",
     "train_cfg has no setting 'max_epoch' .*did you mean "
     "train_cfg.max_epochs"),
    ("x = 1/0\n", r'cannot be read \(ZeroDivisionError'),
    ("_base_ = ['./missing.py']\n", r'cannot be read \(FileNotFoundError'),
])
def test_a_config_with_a_mistake_is_named_before_any_run(
        data, tmp_path, text, why):
    config = tmp_path / 'mine.py'
    base = '' if '_base_' in text else f"_base_ = ['{CONFIG}']\n"
    config.write_text(base + text)
    with pytest.raises(UsageError, match=f'config {config}.*{why}'):
        _configure(data, tmp_path / 'w', str(config))
    assert not (tmp_path / 'w').exists()


def test_a_config_of_no_registered_class_or_no_model_is_named(data,
                                                              tmp_path):
    from fashionseg.runner.run_config import build_runner
    config = tmp_path / 'mine.py'
    config.write_text(f"_base_ = ['{CONFIG}']\n"
                      "model = dict(decode_head=dict(type='NoSuchHead'))\n")
    cfg = _configure(data, tmp_path / 'w', str(config))
    with pytest.raises(UsageError, match=f'config {config}: NoSuchHead is '
                       'not in the mmseg::model registry$'):
        build_runner(cfg)
    config.write_text('x = 1\n')
    with pytest.raises(UsageError, match=f'config {config} has no model'):
        _configure(data, tmp_path / 'w2', str(config))

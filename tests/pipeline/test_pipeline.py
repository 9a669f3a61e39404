"""The DVC pipeline: the offline demo end to end in a temporary clone, what
a parameter change reruns, and resuming an interrupted training stage."""
import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from demo_clone import BIN, DEMO, DVC, run_quiet
from mmengine.hooks import Hook
from mmseg.registry import HOOKS
from training_helpers import (CONFIG_DIR, build_converted_datasets,
                              small_run_options)

from fashionseg.inference.settings import InferenceSettings
from fashionseg.report.claims import paper_claims
from fashionseg.report.labels import NOT_RUN
from fashionseg.runner.run_state import FINGERPRINT_FILE
from fashionseg.runner.training import configure_training, train

MODEL_ROWS = {'fpn_x101': '| FPN (ResNeXt-101), the paper',
              'semfpn_x101': '| Semantic FPN', 'pspnet_r101': '| PSPNet',
              'fcn_r101': '| FCN'}


def _stages():
    return yaml.safe_load((REPO / 'dvc.yaml').read_text())['stages']


def test_demo_stages_are_the_paper_stages_with_demo_params():
    """make demo runs the same pipeline definition: every demo-X stage is
    stage X with `demo.` parameters; only the data source differs."""
    stages = _stages()
    demo = {name[len('demo-'):]: stage for name, stage in stages.items()
            if name.startswith('demo-')}
    paper = {name for name in stages if not name.startswith('demo-')}
    assert set(demo) == paper - {'environment', 'fetch'}

    def as_paper(node):
        text = json.dumps(node).replace('${demo.', '${').replace('"demo.',
                                                                  '"')
        # The paper converts the fetched release, the demo the photos
        # bundled with the tests; the report reads the demo's section of
        # params.yaml.
        text = text.replace('${source}', '${raw}/${item.dataset}')
        return json.loads(text.replace(' --section demo', ''))

    for name, stage in demo.items():
        assert as_paper(stage) == stages[name], name


@pytest.mark.slow
def test_demo_writes_the_report_offline(demo_clone):
    results = demo_clone / DEMO['results']
    text = (results / 'tables.md').read_text()
    for table in ('## Table 1', '## Table 2'):
        section = text.split(table)[1].split('\n## ')[0]
        for model, row in MODEL_ROWS.items():
            line = next((line for line in section.splitlines()
                         if line.startswith(row)), None)
            if model not in DEMO['models']:
                # A model the demo does not train has no measured row.
                assert line is None or NOT_RUN in line, line
                continue
            assert line is not None, (row, section)
            assert NOT_RUN not in line, line
            # Mean +- standard deviation over the demo's seeds, in each of
            # the four columns (acc and the three IoU definitions).
            assert len(DEMO['seeds']) < 2 or line.count(' ± ') == 4, line
    claims = text.split("## Do our runs support the paper's claims?")[1]
    claims = [line for line in claims.split('\n## ')[0].splitlines()
              if line.startswith('| FPN') or line.startswith('| the CRF')]
    assert len(claims) == len(paper_claims(DEMO['models'])) * len(
        DEMO['datasets'])
    for line in claims:
        assert NOT_RUN not in line
        assert any(word in line for word in ('yes', 'no', 'inconclusive'))
    for dataset in DEMO['datasets']:
        for suffix in ('confusion', 'examples'):
            figure = results / 'figures' / f'{dataset}_{suffix}.png'
            assert figure.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
            assert f'figures/{dataset}_{suffix}.png' in text
    benchmark = json.loads((results / 'benchmark.json').read_text())
    assert benchmark['images_per_s'] > 0
    assert benchmark['images_per_s_with_crf'] < benchmark['images_per_s']
    # The engine's rows: each setting asked for, its agreement with eager
    # fp32 (eager fp32 itself agrees fully), and the best one in the table.
    engine = benchmark['engine']
    assert [row['name'] for row in engine['settings']] == [
        InferenceSettings.parse(text).name()
        for text in DEMO['benchmark']['engine'].split()]
    assert engine['settings'][0]['agreement'] == 1.0
    assert all(row['model_images_per_s'] > 0
               and row['end_to_end_images_per_s'] > 0
               for row in engine['settings'])
    assert engine['end_to_end_with_crf_images_per_s'] > 0
    throughput = text.split('measured, engine (')[1].splitlines()[0]
    assert throughput.startswith(engine['best'])
    records = pd.read_csv(results / 'tables.csv')
    measured = records[records.source == 'measured']
    # Every model, with and without CRF, four figures, each seed.
    assert len(measured) == len(DEMO['models']) * 2 * 4 * len(DEMO['seeds'])
    # The main IoU is Tangseng et al.'s per-image mean, from each run's
    # saved per-image confusion matrices.
    for row in measured[measured.metric == 'imgIoU'].itertuples():
        stage = 'test' if row.table == 'without_crf' else 'crf'
        saved = np.load(results / 'runs' / row.dataset / row.method /
                        f'seed{int(row.seed)}' / f'{stage}.confusion.npz')
        direct = []
        for matrix in saved['matrices']:
            inter = np.diag(matrix)[1:].sum()
            union = (matrix.sum(0) + matrix.sum(1))[1:].sum() - inter
            if union:
                direct.append(100 * inter / union)
        assert row.value == pytest.approx(np.mean(direct)), row
    assert sorted(measured.seed.unique()) == DEMO['seeds']
    for seed in DEMO['seeds']:
        record = json.loads((demo_clone / DEMO['work_dirs'] / 'ccp' /
                             'fpn_x101' / f'seed{seed}' / 'train' /
                             'run_record.json').read_text())
        assert record['seed'] == seed
    # DVC sees the demo's metrics (the report's summary, the mean of the
    # runs' own records) and has nothing left to do.
    metrics = f'{DEMO["results"]}/metrics.json'
    shown = run_quiet(DVC + ['metrics', 'show', '--json', metrics], demo_clone)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)['']['data'][metrics]['data']
    for model in DEMO['models']:
        runs = [json.loads((results / 'runs' / 'ccp' / model / f'seed{seed}'
                            / 'test.json').read_text())['aAcc']
                for seed in DEMO['seeds']]
        assert summary['ccp'][model]['aAcc'] == pytest.approx(
            np.mean(runs), abs=0.01)
        assert set(summary['ccp'][model]) == {'aAcc', 'aAcc_crf', 'imgIoU',
                                              'imgIoU_crf'}
    status = run_quiet(DVC + ['status', '--json', 'demo-report'], demo_clone)
    assert json.loads(status.stdout) == {}


def _changed_after(clone: Path, key: str, value) -> set:
    """Stages `dvc status` reports after setting demo.KEY (dotted) to
    ``value``; params.yaml is restored afterwards."""
    path = clone / 'params.yaml'
    original = path.read_text()
    params = yaml.safe_load(original)
    node = params['demo']
    *parents, leaf = key.split('.')
    for part in parents:
        node = node[part]
    node[leaf] = value
    path.write_text(yaml.safe_dump(params))
    try:
        status = run_quiet(DVC + ['status', '--json'], clone)
        assert status.returncode == 0, status.stderr
        return {name for name in json.loads(status.stdout)
                if name.startswith('demo-')}
    finally:
        path.write_text(original)


def _group(prefix):
    return {f'{prefix}@{d}-{m}-{s}' for d in DEMO['datasets']
            for m in DEMO['models'] for s in DEMO['seeds']}


@pytest.mark.slow
def test_a_param_change_marks_only_the_dependent_stages(demo_clone):
    assert _changed_after(demo_clone, 'crf.trials',
                          DEMO['crf']['trials'] + 1) == \
        _group('demo-crf-search')
    assert _changed_after(demo_clone, 'train.epochs',
                          DEMO['train']['epochs'] + 1) == \
        _group('demo-train')
    assert _changed_after(demo_clone, 'figures.examples', 1) == \
        {f'demo-figures@{d}' for d in DEMO['datasets']}


# Resuming an interrupted training stage (tools/train.py --auto-resume).

@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    roots = build_converted_datasets(tmp_path_factory.mktemp('data'))
    return roots['fashionista']


def _configure(data_root, work_dir, max_epochs=2, speedups=()):
    return configure_training(
        str(CONFIG_DIR / 'fcn_r101_fashionista.py'), work_dir=str(work_dir),
        pretrained=False, auto_resume=True, speedups=speedups,
        cfg_options=small_run_options('fcn_r101', data_root,
                                      max_epochs=max_epochs,
                                      train_images=2, val_images=1))


class _Interrupted(Exception):
    pass


@HOOKS.register_module()
class InterruptAfterFirstEpochHook(Hook):
    """Stops training once the first epoch's checkpoint is written, as a
    killed `dvc repro` would."""
    priority = 'LOWEST'

    def after_train_epoch(self, runner):
        if runner.epoch == 0:
            raise _Interrupted


def test_interrupted_training_resumes_from_its_last_checkpoint(
        data_root, tmp_path):
    config = str(CONFIG_DIR / 'fcn_r101_fashionista.py')
    work = tmp_path / 'train'
    cfg = _configure(data_root, work)
    assert cfg.resume is False
    cfg.custom_hooks = list(cfg.custom_hooks) + [
        dict(type='InterruptAfterFirstEpochHook')]
    with pytest.raises(_Interrupted):
        train(cfg, config)
    assert (work / 'epoch_1.pth').is_file()
    assert not (work / 'epoch_2.pth').exists()
    # The rerun of the same stage continues at epoch 2.
    cfg = _configure(data_root, work)
    assert cfg.resume is True
    first = json.loads((work / 'run_record.json').read_text())
    runner = train(cfg, config, export_best=str(tmp_path / 'model.pth'))
    assert runner.epoch == 2
    record = json.loads((work / 'run_record.json').read_text())
    assert record['resumed'] is True
    # The interrupted session's record is kept, as it was (it may have run
    # with other speed-ups or on another machine).
    assert record['earlier_sessions'] == [first]
    assert first['resumed'] is False
    assert (work / 'epoch_2.pth').is_file()
    assert (tmp_path / 'model.pth').is_file()
    logs = sorted(work.glob('*/*.log'))
    assert 'Epoch(train) [1]' not in logs[-1].read_text()
    assert 'Epoch(train) [2]' in logs[-1].read_text()
    # And it ends as the uninterrupted run does, to the bit: the second
    # epoch draws the same dropout masks and flips (EpochSeedHook).
    # The interrupted run stopped before validating epoch 1; the resumed
    # one validated it first, so the best checkpoint is chosen among the
    # same epochs.
    assert 'validating the resumed epoch 1' in logs[-1].read_text()
    train(_configure(data_root, tmp_path / 'whole'), config,
          export_best=str(tmp_path / 'whole.pth'))
    for resumed, whole in ((work / 'epoch_2.pth',
                            tmp_path / 'whole' / 'epoch_2.pth'),
                           (tmp_path / 'model.pth', tmp_path / 'whole.pth')):
        resumed, whole = (torch.load(path, map_location='cpu',
                                     weights_only=False)['state_dict']
                          for path in (resumed, whole))
        assert resumed.keys() == whole.keys()
        for key, value in whole.items():
            assert torch.equal(resumed[key], value), key


def test_a_run_resumes_with_other_speedups(data_root, tmp_path):
    """The speed-ups change how a step is computed, not what the run
    learns: a run interrupted without them resumes with them (and the
    other way round), not afresh, and its record says which session ran
    with which."""
    config = str(CONFIG_DIR / 'fcn_r101_fashionista.py')
    work = tmp_path / 'train'
    cfg = _configure(data_root, work)
    cfg.custom_hooks = list(cfg.custom_hooks) + [
        dict(type='InterruptAfterFirstEpochHook')]
    with pytest.raises(_Interrupted):
        train(cfg, config)
    speedups = ['channels-last', 'foreach-adam', 'no-host-sync']
    # A work dir fingerprinted as the revisions before this one did (the
    # whole config, speed-ups and loader settings included) is the same
    # run, and gets the new fingerprint.
    from fashionseg.runner import training
    from fashionseg.runner.run_state import FINGERPRINT_FILE
    offered = []
    prepare = training.prepare_auto_resume
    training.prepare_auto_resume = lambda *args, **kwargs: (
        offered.append(kwargs['also']), prepare(*args, **kwargs))[1]
    try:
        _configure(data_root, work)
    finally:
        training.prepare_auto_resume = prepare
    legacy, = offered
    (work / FINGERPRINT_FILE).write_text(legacy + '\n')
    assert _configure(data_root, work).resume is True
    assert (work / FINGERPRINT_FILE).read_text().strip() != legacy
    cfg = _configure(data_root, work, speedups=speedups)
    assert cfg.resume is True
    runner = train(cfg, config)
    assert runner.epoch == 2
    assert not list(work.glob('stale-*'))
    record = json.loads((work / 'run_record.json').read_text())
    assert record['training_speedups'] == speedups
    assert [s['training_speedups'] for s in record['earlier_sessions']] \
        == [[]]
    # A finished run, rerun with other speed-ups (DVC reruns the stage on
    # the parameter's change): found finished, not trained again, and its
    # best model exported.
    weights = (work / 'epoch_2.pth').read_bytes()
    trained = (work / 'run_record.json').read_text()
    cfg = _configure(data_root, work)
    assert cfg.resume is True
    runner = train(cfg, config, export_best=str(tmp_path / 'model.pth'))
    assert runner.epoch == 2 and (tmp_path / 'model.pth').is_file()
    assert (work / 'epoch_2.pth').read_bytes() == weights
    # That session trained nothing: the record is still the one of the
    # sessions that trained.
    assert (work / 'run_record.json').read_text() == trained
    # A changed parameter is another run, with or without speed-ups.
    cfg = _configure(data_root, work, max_epochs=3, speedups=speedups)
    assert cfg.resume is False
    assert (work / 'stale-1' / 'epoch_2.pth').is_file()
    # With the record of the run it is, which the new run does not keep.
    stale = json.loads((work / 'stale-1' / 'run_record.json').read_text())
    assert [s['training_speedups'] for s in stale['earlier_sessions']] + [
        stale['training_speedups']] == [[], speedups]
    assert not (work / 'run_record.json').exists()


def test_a_changed_run_does_not_resume_a_stale_work_dir(data_root, tmp_path):
    work = tmp_path / 'train'
    work.mkdir()
    (work / 'epoch_7.pth').write_bytes(b'old run')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_7.pth'))
    (work / FINGERPRINT_FILE).write_text('another run\n')
    cfg = _configure(data_root, work)
    assert cfg.resume is False
    assert not (work / 'epoch_7.pth').exists()
    assert not (work / 'last_checkpoint').exists()
    # Moved aside, not deleted: the other run's files are the user's.
    assert (work / 'stale-1' / 'epoch_7.pth').read_bytes() == b'old run'
    assert (work / 'stale-1' / 'last_checkpoint').is_file()
    # The same run again: it resumes from its newest whole checkpoint, and
    # skips one that an interrupted save left truncated.
    import torch
    torch.save({'state_dict': {}}, work / 'epoch_1.pth')
    (work / 'epoch_2.pth').write_bytes(b'PK\x03\x04 truncated')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_2.pth'))
    cfg = _configure(data_root, work)
    assert cfg.resume is True
    assert cfg.load_from == str(work / 'epoch_1.pth')


def test_demo_learning_rate_decays_over_the_demo_schedule():
    """The demo configs' poly decay ends with params.yaml's demo schedule,
    so a changed demo.train.epochs does not leave the rate flat or cut."""
    from mmengine.config import Config
    for model in DEMO['models']:
        for dataset in DEMO['datasets']:
            cfg = Config.fromfile(
                str(REPO / DEMO['configs'] / f'{model}_{dataset}.py'))
            (scheduler,) = cfg.param_scheduler
            assert scheduler['type'] == 'PolyLR'
            assert scheduler['end'] == DEMO['train']['epochs'], model


@pytest.mark.slow
def test_a_code_change_marks_the_stages_that_run_it(demo_clone):
    """Editing the PyTorch CRF reruns the stages that run the CRF, and not
    training or testing."""
    path = demo_clone / 'fashionseg' / 'crf' / 'torch_backend.py'
    original = path.read_text()
    path.write_text(original + '\n# edited\n')
    try:
        status = run_quiet(DVC + ['status', '--json'], demo_clone)
        assert status.returncode == 0, status.stderr
        changed = {name.split('@')[0] for name in json.loads(status.stdout)
                   if name.startswith('demo-')}
    finally:
        path.write_text(original)
    assert {'demo-crf-search', 'demo-crf-apply'} <= changed
    assert not changed & {'demo-train', 'demo-test', 'demo-convert',
                          'demo-report'}


def test_auto_resume_moves_aside_checkpoints_of_a_run_without_fingerprint(
        data_root, tmp_path):
    """A work dir trained without --auto-resume has no fingerprint: its
    checkpoints are moved aside, never deleted."""
    work = tmp_path / 'train'
    work.mkdir()
    (work / 'epoch_3.pth').write_bytes(b'by hand')
    (work / 'stale-1').mkdir()  # an earlier move stays as it is
    assert _configure(data_root, work).resume is False
    assert (work / 'stale-2' / 'epoch_3.pth').read_bytes() == b'by hand'
    assert list((work / 'stale-1').iterdir()) == []


@pytest.mark.slow
def test_the_readmes_dvc_commands(demo_clone):
    """The README's DVC commands, as written, from a shell whose PATH
    holds no Python environment: an experiment, what would rerun, the
    metrics and the comparison of experiments."""
    readme = (REPO / 'README.md').read_text()
    commands = [line.split('#')[0].strip() for line in readme.splitlines()
                if line.startswith('.venv/bin/dvc ')]
    assert len(commands) >= 4, commands
    outputs = {}
    for command in commands:
        args = shlex.split(command)
        result = run_quiet([str(BIN / 'dvc')] + args[1:], demo_clone)
        assert result.returncode == 0, (command, result.stdout[-3000:],
                                        result.stderr[-3000:])
        assert 'failed to load' not in result.stderr + result.stdout
        outputs[' '.join(args[1:3])] = result.stdout
    assert 'aAcc' in outputs['metrics show']
    shown = outputs['exp show']
    assert 'demo.crf.trials' in shown and 'aAcc' in shown
    # The experiment's own figures, not "!" (not found).
    rows = [line for line in shown.splitlines() if line.startswith('|')]
    assert not any('| !' in row for row in rows[2:] if 'master' not in row
                   and 'main' not in row), shown
    assert max(len(line) for line in shown.splitlines()) < 400

"""The usual mistakes, made as a user makes them (each tool in a process
of its own: tests/tool_process.py; real configs, the bundled photos):
each ends in one `error:` line that names what was wrong, before any
config dump, and no traceback."""

import pytest
from tool_process import run_tool
from training_helpers import untrained_demo_model

FPN = 'mmseg_configs/demo/fpn_x101_ccp.py'
SEMFPN = 'mmseg_configs/demo/semfpn_x101_ccp.py'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('usage')
    # Weights of the demo's FPN (untrained: only their names matter).
    data, checkpoint = untrained_demo_model(root, FPN)
    return root, data, checkpoint


def _run(tool, *args):
    return run_tool(tool, *args)


def _one_error_line(result, *fragments):
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    errors = [line for line in (result.stdout + result.stderr).splitlines()
              if line.startswith('error: ')]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    # Before any config dump: nothing much was printed at all.
    assert len(result.stdout.splitlines()) < 5, result.stdout[-2000:]
    return errors[0]


def test_a_config_that_does_not_exist(setup):
    _, data, checkpoint = setup
    _one_error_line(_run('train.py', 'mmseg_configs/fpn_x101_cfdp.py',
                         '--data-root', data),
                    'config mmseg_configs/fpn_x101_cfdp.py does not exist',
                    'did you mean fpn_x101_cfpd.py')
    _one_error_line(_run('test.py', 'nowhere/fpn.py', checkpoint),
                    'config nowhere/fpn.py does not exist')


def test_a_dataset_not_converted(setup, tmp_path):
    _, _, checkpoint = setup
    _one_error_line(
        _run('train.py', FPN, '--data-root', tmp_path / 'data' / 'ccp'),
        f'{tmp_path / "data" / "ccp"} does not exist',
        'python tools/convert_data.py ccp')
    (tmp_path / 'raw').mkdir()
    _one_error_line(
        _run('test.py', FPN, checkpoint, '--data-root', tmp_path / 'raw'),
        f'{tmp_path / "raw" / "img_dir" / "test"} does not exist',
        'not a converted ccp dataset')


@pytest.mark.parametrize('option, fragments', [
    (['train_cfg.max_epoch=1'],
     ["train_cfg has no setting 'max_epoch'", 'train_cfg.max_epochs']),
    (['dataset.indice=2'], ["the config has no setting 'dataset'"]),
    (['train_dataloader.dataset.indice=2'],
     ['train_dataloader.dataset.indices']),
    (['train_cfg.max_epochs', '1'],
     ['KEY=VALUE', "'train_cfg.max_epochs' has no \"=\""]),
])
def test_cfg_options_unknown_or_malformed(setup, option, fragments):
    _, data, _ = setup
    _one_error_line(_run('train.py', FPN, '--data-root', data,
                         '--cfg-options', *option), *fragments)


def test_a_checkpoint_that_does_not_exist(setup, tmp_path):
    _, data, _ = setup
    for tool in ('test.py', 'benchmark_inference.py'):
        _one_error_line(_run(tool, FPN, tmp_path / 'best.pth', '--data-root',
                             data),
                        f'checkpoint {tmp_path / "best.pth"} does not exist')


def test_weights_of_another_model_are_refused(setup, tmp_path):
    """A checkpoint of the paper's FPN tested with the semantic-FPN config
    stops (it used to score aAcc 0.0 and exit 0)."""
    _, data, checkpoint = setup
    for tool, extra in (('test.py', ['--work-dir', tmp_path / 'w']),
                        ('benchmark_inference.py', ['--images', 1])):
        result = _run(tool, SEMFPN, checkpoint, '--data-root', data,
                      '--device', 'cpu', *extra)
        assert result.returncode != 0
        assert 'Traceback' not in result.stderr, result.stderr[-3000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f'error: checkpoint {checkpoint} does not '
                               f'fit the model of {SEMFPN}'), last
        assert 'missing' in last and 'unexpected' in last
    assert not (tmp_path / 'w' / 'metrics.json').exists()


def test_no_pkg_resources_warning(setup):
    _, data, checkpoint = setup
    result = _run('test.py', FPN, checkpoint, '--data-root', data,
                  '--device', 'cpu', '--max-images', 1, '--work-dir',
                  setup[0] / 'w')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'pkg_resources' not in result.stderr


@pytest.mark.parametrize('args,fragment', [
    (['search', '--trials', '0'], '--trials: must be at least 1, not 0'),
    (['apply', '--params', 'p.json', '--workers', '-1'],
     '--workers: must be at least 1, not -1'),
    (['apply', '--params', 'p.json', '--batch-size', '0'],
     '--batch-size: must be at least 1, not 0')])
def test_the_crfs_counts_are_whole_numbers_of_at_least_one(
        tmp_path, args, fragment):
    """Refused before anything runs (a search of 0 trials failed after
    its baseline with `max() arg is an empty sequence`)."""
    result = _run('crf.py', *args, '--scores', tmp_path, '--data', tmp_path,
                  '--out', tmp_path / 'out')
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert fragment in result.stderr.strip().splitlines()[-1]


def test_a_work_dir_under_a_file(setup, tmp_path):
    _, data, checkpoint = setup
    (tmp_path / 'afile').write_text('mine')
    for tool, args in (('train.py', [FPN]),
                       ('test.py', [FPN, checkpoint])):
        _one_error_line(_run(tool, *args, '--data-root', data, '--work-dir',
                             tmp_path / 'afile' / 'run'),
                        f'{tmp_path / "afile"} is a file, not a folder')
    assert (tmp_path / 'afile').read_text() == 'mine'


def test_benchmark_records_never_replace_a_users_file_or_an_input(
        setup, tmp_path):
    """Each benchmark's --out replaces only an earlier record of its own,
    refused before any timing: never the checkpoint being timed, a
    dataset file or a user's file."""
    _, data, checkpoint = setup
    notes = tmp_path / 'notes.json'
    notes.write_text('{"mine": 1}')
    before = {p: p.read_bytes() for p in (checkpoint, notes,
                                          data / 'dataset.json')}
    for out, why in ((checkpoint, 'lies within the input'),
                     (notes, 'exists and is not a result '
                      'tools/benchmark_inference.py wrote')):
        _one_error_line(_run('benchmark_inference.py', FPN, checkpoint,
                             '--data-root', data, '--images', 1, '--out',
                             out), f'--out {out}', why)
    _one_error_line(_run('benchmark_train.py', FPN, '--data-root', data,
                         '--out', data / 'splits' / 'train.txt'),
                    'lies within the input')
    _one_error_line(_run('benchmark_crf.py', 'speed', '--out', notes),
                    'is not a result tools/benchmark_crf.py wrote')
    result = _run('benchmark_crf.py', 'speed', '--images', 0)
    assert result.returncode == 2
    assert '--images: must be at least 1, not 0' in result.stderr
    _one_error_line(_run('benchmark_crf.py', 'speed', '--photo',
                         tmp_path / 'none.jpg', '--backend', 'torch'),
                    f'{tmp_path / "none.jpg"}: not a photo')
    assert {p: p.read_bytes() for p in before} == before


def test_the_environment_record_replaces_only_its_own(tmp_path):
    import json
    notes = tmp_path / 'notes.json'
    notes.write_text('{"mine": 1}')
    _one_error_line(_run('collect_env.py', '--out', notes),
                    f'--out {notes} exists and is not a result '
                    'tools/collect_env.py wrote')
    _one_error_line(_run('collect_env.py', '--out', tmp_path),
                    'is a folder')
    assert notes.read_text() == '{"mine": 1}'
    record = tmp_path / 'environment.json'
    for _ in range(2):  # a rerun replaces its own record
        assert _run('collect_env.py', '--out', record).returncode == 0
    assert 'packages' in json.loads(record.read_text())


def test_the_training_benchmark_prints_its_record_alone_on_stdout(setup):
    """mmengine's log goes to stderr, so that stdout reads as JSON."""
    import json
    _, data, _ = setup
    result = _run('benchmark_train.py', FPN, '--data-root', data, '--iters',
                  1, '--warmup', 0, '--cfg-options',
                  'train_dataloader.batch_size=2')
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout)
    assert record['batch_size'] == 2 and record['iterations_timed'] == 1

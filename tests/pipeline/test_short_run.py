"""The README's short run (--max-images), command by command as written
there, from conversion to figures."""
import json
import os
import re
import shlex
import subprocess

import pytest
from conftest import REPO


def _readme_commands():
    text = (REPO / 'README.md').read_text()
    block = re.search(r'<!-- short-run -->\n```bash\n(.*?)```', text,
                      re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_readmes_short_run(tmp_path):
    for name in ('.venv', 'tools', 'mmseg_configs', 'tests'):
        os.symlink(REPO / name, tmp_path / name)
    commands = _readme_commands()
    assert [shlex.split(c)[1] for c in commands] == [
        'tools/convert_data.py', 'tools/train.py', 'tools/test.py',
        'tools/crf.py', 'tools/crf.py', 'tools/figures.py']
    for command in commands:
        # Fewer epochs than the README's: the same run, only shorter.
        command = command.replace('max_epochs=20', 'max_epochs=2')
        result = subprocess.run(command, shell=True, cwd=tmp_path,
                                capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, (command, result.stderr[-3000:])
    short = tmp_path / 'work_dirs' / 'short'
    record = json.loads((short / 'train' / 'run_record.json').read_text())
    assert record['max_images'] == 8
    for split in ('val', 'test'):
        metrics = json.loads((short / f'{split}.json').read_text())
        assert metrics['max_images'] == 4
        stems = (tmp_path / 'data' / 'short' / 'ccp' / 'splits' /
                 f'{split}.txt').read_text().split()[:4]
        assert sorted(p.stem for p in (short / f'scores_{split}').glob(
            '*.npz')) == sorted(stems)
    search = json.loads((short / 'crf_search.json').read_text())
    assert search['max_images'] == 4 and len(search['trials']) == 5
    crf = json.loads((short / 'crf_test' / 'metrics.json').read_text())
    assert crf['max_images'] == 4
    for suffix in ('confusion', 'examples'):
        png = (short / f'ccp_{suffix}.png').read_bytes()
        assert png[:8] == b'\x89PNG\r\n\x1a\n'
    # A rerun replaces its own figures, and never a user's picture.
    import cv2
    import numpy as np
    mine = cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    (short / 'my_examples.png').write_bytes(mine)
    figures = commands[-1]
    for out, code in (('work_dirs/short/ccp', 0), ('work_dirs/short/my', 2)):
        result = subprocess.run(
            figures.replace('work_dirs/short/ccp', out), shell=True,
            cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == code, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        'error: --out work_dirs/short/my_confusion.png: '
        'work_dirs/short/my_examples.png, which tools/figures.py writes '
        'beside it, exists and is not a file it wrote; choose another name')
    assert not (short / 'my_confusion.png').exists()
    assert (short / 'my_examples.png').read_bytes() == mine


def test_figures_leave_nothing_behind_when_an_input_is_missing(tmp_path):
    """tools/figures.py reads every input before writing either figure."""
    import numpy as np
    from raw_formats import BUNDLED_CCP

    from custom_datasets.convert import convert_release
    from fashionseg.evaluation.confusion import save_confusions
    data = tmp_path / 'ccp'
    convert_release('ccp', BUNDLED_CCP, data, 64)
    run = tmp_path / 'run'
    (run / 'scores_test').mkdir(parents=True)
    save_confusions(tmp_path / 'crf.confusion.npz', ['a'],
                    [np.eye(59, dtype=np.int64)],
                    json.loads((data / 'dataset.json').read_text())
                    ['classes'])
    result = subprocess.run(
        ['.venv/bin/python', 'tools/figures.py', '--data', str(data),
         '--run', str(run), '--confusion',
         str(tmp_path / 'crf.confusion.npz'), '--out', str(tmp_path / 'f')],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith('error: ')
    assert not list(tmp_path.glob('f_*.png'))
    # A damaged confusion file, a score file given in its place, an --out
    # that is a folder and no examples: one line each, nothing written.
    junk = tmp_path / 'junk.npz'
    junk.write_bytes(b'not an archive')
    cfpd = tmp_path / 'cfpd.confusion.npz'
    save_confusions(cfpd, ['a'], [np.eye(23, dtype=np.int64)],
                    [f'class{i}' for i in range(23)])
    (tmp_path / 'figs').mkdir()
    for args, why in (
            (['--confusion', junk], f'{junk}: not a confusion file'),
            (['--confusion', tmp_path / 'missing.npz'], 'not found'),
            (['--confusion', cfpd], f'{cfpd}: its 23 classes are not the '
             f'59 classes of {data}'),
            (['--out', tmp_path / 'figs'], 'not a folder'),
            (['--out', f'{tmp_path / "figs"}/'], 'not a folder'),
            (['--examples', 0], 'at least 1')):
        options = {'--confusion': tmp_path / 'crf.confusion.npz',
                   '--out': tmp_path / 'f', '--examples': 1}
        options.update(zip(args[::2], args[1::2]))
        result = subprocess.run(
            ['.venv/bin/python', 'tools/figures.py', '--data', str(data),
             '--run', str(run)] + [str(v) for item in options.items()
                                   for v in item],
            cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert 'Traceback' not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert 'error: ' in last and why in last, (args, last)
    assert not [p for p in tmp_path.rglob('*.png') if data not in p.parents]

"""A tool that DVC runs names, in its error, the params.yaml key behind
the option or setting it refuses (DVC names the running stage in its
command's environment): a user who set ``demo.crf.trials`` reads that
key, not only the ``--trials`` the stage's command made of it."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from fashionseg.utils.dvc_stage import params_key, stage_command

BIN = Path(sys.executable).parent


@pytest.mark.parametrize('stage,message,found', [
    ('demo-crf-search@ccp-fpn_x101-0',
     'argument --trials: must be at least 1, not -1',
     ('--trials', 'demo.crf.trials')),
    ('demo-train@ccp-fpn_x101-0', 'optim_wrapper.optimizer.lr must be a '
     'finite number of at least 0, not -1',
     ('optim_wrapper.optimizer.lr', 'demo.train.lr')),
    ('train@cfpd-fpn_x101-0', "unknown training speed-up 'x' (--speedups; "
     'train.speedups in params.yaml)', ('--speedups', 'train.speedups')),
    # A path built from a parameter, a matrix item's value, or the end
    # of a longer name: no key.
    ('environment', '--out results/environment.json exists', None),
    ('demo-train@ccp-fpn_x101-0', "unknown key 'optimizer.lr'", None),
    ('demo-crf-search@ccp-fpn_x101-0', '--data x is not converted', None),
])
def test_the_key_behind_an_option_of_the_pipelines_stages(stage, message,
                                                          found):
    assert params_key(message, stage_command(stage, REPO)) == found


def test_a_stage_dvc_runs_names_its_parameter(tmp_path):
    """The real DVC, a matrix stage of tools/crf.py given a parameter it
    refuses."""
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(
        {'crf': {'trials': -1}}))
    (tmp_path / 'dvc.yaml').write_text(yaml.safe_dump({'stages': {'search': {
        'matrix': {'seed': [0]},
        'cmd': f'{sys.executable} {REPO / "tools" / "crf.py"} search '
               '--scores s --data d --trials ${crf.trials} '
               '--seed ${item.seed} --out o.json',
        'params': ['crf.trials'], 'outs': ['o.json']}}}))
    subprocess.run([str(BIN / 'dvc'), 'init', '-q', '--no-scm'],
                   cwd=tmp_path, check=True)
    result = subprocess.run([str(BIN / 'dvc'), 'repro'], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert ("error: argument --trials: must be at least 1, not -1 (in DVC "
            "stage search@0: --trials is params.yaml's crf.trials)"
            ) in result.stdout + result.stderr, result.stderr[-2000:]

"""Which value of params.yaml a DVC stage passed to its tool, for the
error a tool ends with when DVC runs it: a user who set a parameter
(``dvc exp run -S demo.crf.trials=-1``) reads its key, not only the
command-line option it became. DVC names the running stage in its
command's environment (``DVC_STAGE``)."""
import os
import re
from pathlib import Path
from typing import Optional, Tuple

# An option (--trials) or a dotted setting (optim_wrapper.optimizer.lr).
_NAMES = re.compile(r'--[A-Za-z][\w-]*|[A-Za-z_]\w*(?:\.\w+)+')


def stage_command(stage: str, folder: Path) -> Optional[str]:
    """The command template of the stage DVC addresses as ``stage``
    (``demo-crf-search@ccp-fpn_x101-0``; ``path/dvc.yaml:name`` where
    the file is not the one in the folder DVC ran in) in the dvc.yaml of
    ``folder``, where the stage's command runs."""
    import yaml
    path, _, name = stage.rpartition(':')
    # (The address's path is relative to where dvc was run, not to the
    # stage's folder: only its file name is used.)
    stages = yaml.safe_load((folder / Path(path or 'dvc.yaml').name)
                            .read_text())
    definition = (stages.get('stages') or {}).get(name.split('@')[0])
    if not isinstance(definition, dict):
        return None
    command = (definition.get('do') or definition).get('cmd')
    return ' '.join(command) if isinstance(command, list) else command


def params_key(message: str, command: str) -> Optional[Tuple[str, str]]:
    """The first option or setting ``message`` names that ``command``
    takes from a parameter (``--trials ${demo.crf.trials}``), with that
    parameter's key; None where none does (a matrix item's value is no
    parameter)."""
    for name in _NAMES.findall(message):
        # The whole name (not the end of a longer one), and the whole
        # value a parameter (not a path built from one).
        found = re.search(r'(?<![\w.-])' + re.escape(name) +
                          r'[ =]\$\{([^}]+)\}(?=\s|$)', command)
        if found and not found.group(1).startswith(('item.', 'key')):
            return name, found.group(1)
    return None


def params_note(message: str) -> str:
    """Where DVC runs the tool: which params.yaml key ``message`` is
    about, as a note to end it with; empty elsewhere, and where dvc.yaml
    cannot tell (the error is reported as it is)."""
    stage = os.environ.get('DVC_STAGE')
    if not stage:
        return ''
    try:
        # A stage's command runs in its dvc.yaml's folder.
        command = stage_command(stage, Path.cwd())
    except Exception:  # noqa: BLE001 (never hides the error it adds to)
        command = None
    found = params_key(message, command) if command else None
    if found is None:
        return f' (in DVC stage {stage}, whose options dvc.yaml takes ' \
            'from params.yaml)'
    name, key = found
    return f' (in DVC stage {stage}: {name} is params.yaml\'s {key})'

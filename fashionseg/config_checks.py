"""Checking what a user hands the tools before a run starts, so that the
usual mistakes end in one ``error:`` line instead of a traceback after a
config dump: a config path that is not there, an unknown or malformed
``--cfg-options`` key, a dataset not converted yet (or a mistyped
``--data-root``), a checkpoint that is not there.
"""
import difflib
import inspect
import os
import os.path as osp
import re
from typing import Iterable, List, Optional

from mmengine.config import Config

from fashionseg.errors import UsageError


def check_config_path(config: str) -> None:
    if not osp.isfile(config):
        hint = _closest(osp.basename(config), _configs_beside(config))
        raise UsageError(f'config {config} does not exist'
                         + (f'; did you mean {hint}?' if hint else ''))


def load_config(config: str) -> Config:
    """``Config.fromfile`` of a config that must exist: a Python syntax
    error in it (or in a base it inherits), any other failure to read it,
    and a setting its classes do not take (:func:`check_config_keys`)
    said in one line."""
    check_config_path(config)
    try:
        cfg = Config.fromfile(config)
    except SyntaxError as error:
        where = error.filename if error.filename and not \
            error.filename.startswith('<') else config
        raise UsageError(f'config {where}, line {error.lineno}: '
                         f'{error.msg}') from None
    except Exception as error:  # noqa: BLE001 (a config is the user's code)
        # A missing base, an import that fails, a file that is not UTF-8
        # or not a config: mmengine's own words, in one line.
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise UsageError(f'config {config} cannot be read '
                         f'({type(error).__name__}: '
                         f'{lines[0] if lines else ""})') from None
    check_config_keys(cfg, config)
    return cfg


# The parts of a config whose settings are checked against the classes
# they build (model, loops, optimiser), and the keys below which the
# settings are another builder's (mmcv's layer builders take settings,
# such as norm_cfg's requires_grad, that the layer class itself does not).
CHECKED_PARTS = ('model', 'train_cfg', 'val_cfg', 'test_cfg', 'optim_wrapper')
# Settings a builder takes off a part before its class sees them.
_BUILDERS_OWN = {'optim_wrapper': ('paramwise_cfg', 'constructor')}
_OTHER_BUILDERS = ('norm_cfg', 'act_cfg', 'conv_cfg', 'init_cfg', 'dcn',
                   'plugins', 'paramwise_cfg', 'train_cfg', 'test_cfg')


def check_config_keys(cfg: Config, config: str) -> None:
    """Every setting of a typed part of the config (a ``type=`` dict) under
    :data:`CHECKED_PARTS` is an argument its class takes: a misspelt
    ``num_clases`` or ``max_epoch`` failed deep in the runner, or not at
    all."""
    settings = cfg.to_dict()
    for part in CHECKED_PARTS:
        if part in settings:
            _check_node(settings[part], part, config)


def _check_node(node, where: str, config: str) -> None:
    if isinstance(node, (list, tuple)):
        for index, item in enumerate(node):
            _check_node(item, f'{where}.{index}', config)
        return
    if not isinstance(node, dict):
        return
    if 'type' in node:
        names, still_open = _arguments(node)
        if not still_open and names is not None:
            own = ('type', '_scope_') + _BUILDERS_OWN.get(where, ())
            for key in node:
                if key not in names and key not in own:
                    hint = _closest(key, names)
                    raise UsageError(
                        f'config {config}: {where} has no setting {key!r} '
                        f'({node["type"]} takes no such argument)'
                        + (f'; did you mean {where}.{hint}?' if hint
                           else ''))
    for key, value in node.items():
        if key in _BUILDERS_OWN.get(where, ()) or (
                where.count('.') and key in _OTHER_BUILDERS):
            continue
        _check_node(value, f'{where}.{key}', config)


def _configs_beside(config: str) -> List[str]:
    folder = osp.dirname(config) or '.'
    if not osp.isdir(folder):
        return []
    return [name for name in sorted(os.listdir(folder))
            if name.endswith('.py')]


def _closest(word: str, candidates: Iterable[str]) -> Optional[str]:
    found = difflib.get_close_matches(word, list(candidates), n=1)
    return found[0] if found else None


def check_cfg_options(cfg: Config, options: dict) -> None:
    """Every ``--cfg-options`` key must name a setting of the config, or a
    new argument that the class the enclosing ``type`` names accepts
    (``train_dataloader.dataset.indices=6``); anything else would be
    ignored silently or fail deep inside the runner."""
    settings = cfg.to_dict()
    for key in options:
        _check_key(settings, key)


def _check_key(settings: dict, key: str) -> None:
    node, parts = settings, key.split('.')
    for depth, part in enumerate(parts):
        if isinstance(node, (list, tuple)) and part.isdigit() and \
                int(part) < len(node):
            node = node[int(part)]
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        where = '.'.join(parts[:depth]) or 'the config'
        known = list(node) if isinstance(node, dict) else []
        if isinstance(node, dict) and depth > 0 and \
                _accepts(node, part) and depth == len(parts) - 1:
            return  # a new argument the class takes
        hint = _closest(part, known + (_arguments(node)[0] or []))
        raise UsageError(
            f'--cfg-options {key}: {where} has no setting {part!r}'
            + (f'; did you mean {".".join(parts[:depth] + [hint])}?'
               if hint else ''))


def _class_of(node: dict):
    """The class a config dict's ``type`` names, from MMSegmentation's and
    mmengine's registries; None where there is none."""
    kind = node.get('type') if isinstance(node, dict) else None
    if isinstance(kind, type):
        return kind
    if not isinstance(kind, str):
        return None
    from mmseg import registry
    for name in dir(registry):
        found = getattr(registry, name)
        if hasattr(found, 'get') and hasattr(found, 'module_dict'):
            try:
                cls = found.get(kind)
            except Exception:  # noqa: BLE001 (a registry that cannot)
                cls = None
            if cls is not None:
                return cls
    return None


def _arguments(node):
    """(the keyword arguments the node's class takes, following ``**kwargs``
    up its base classes; whether it still takes any other). A dataloader
    dict's class is ``torch.utils.data.DataLoader``; another untyped dict
    gives (None, True): its keys are the user's."""
    if not isinstance(node, dict):
        return [], False
    cls = _class_of(node)
    if cls is None:
        if 'dataset' not in node or 'type' in node:
            return None, True
        from torch.utils.data import DataLoader
        cls = DataLoader
    if not inspect.isclass(cls):
        return [], True  # a function: its arguments are not checked
    names = []
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())
        names += [p.name for p in params if p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != 'self']
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names, False
        if not _passes_kwargs_up(init):
            # ``**kwargs`` that go elsewhere (TIMMBackbone's, to timm):
            # any name may be right.
            return names, True
    return names, True


def _passes_kwargs_up(init) -> bool:
    """Whether an ``__init__`` hands its ``**kwargs`` to its base class's
    (``super().__init__(..., **kwargs)``), as read from its source."""
    try:
        source = inspect.getsource(init)
    except (OSError, TypeError):
        return False
    return re.search(r'super\([^)]*\)\.__init__\([^)]*\*\*\w+', source,
                     re.S) is not None


def _accepts(node, name: str) -> bool:
    names, still_open = _arguments(node)
    return still_open or name in names


LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def is_whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_loader_values(cfg: Config, loaders: Iterable[str] = LOADERS
                        ) -> None:
    """Each of ``loaders``' batch size a whole number of at least 1 and
    its worker count one of at least 0: torch's ``DataLoader`` would
    refuse others with a traceback, and at 0 the training loop would
    have no batch."""
    for loader in loaders:
        settings = cfg.get(loader) or {}
        for key, least in (('batch_size', 1), ('num_workers', 0)):
            value = settings.get(key, least)
            if not is_whole_number(value) or value < least:
                raise UsageError(f'{loader}.{key} must be a whole number '
                                 f'of at least {least}, not {value!r}')


def check_dataset_folders(cfg: Config, loaders: Iterable[str] = LOADERS
                          ) -> None:
    """Each loader's converted dataset and split folders exist."""
    for name in loaders:
        loader = cfg.get(name)
        if not loader:
            continue
        dataset = loader.dataset
        root = dataset.get('data_root') or ''
        kind = str(dataset.get('type', ''))
        release = kind.lower().replace('dataset', '') or 'DATASET'
        convert = (f'python tools/convert_data.py {release} --src '
                   f'RAW_RELEASE --out {root or "data/" + release}')
        if not osp.isdir(root):
            raise UsageError(
                f'the {release} dataset folder {root} does not exist: '
                f'convert the release first ({convert}), or point '
                '--data-root at a converted dataset')
        for folder in (dataset.get('data_prefix') or {}).values():
            path = osp.join(root, folder)
            if not osp.isdir(path):
                raise UsageError(
                    f'{path} does not exist: {root} is not a converted '
                    f'{release} dataset (tools/convert_data.py writes '
                    f'dataset.json, img_dir/, ann_dir/ and splits/: '
                    f'{convert})')
            if not any(True for _ in os.scandir(path)):
                raise UsageError(f'{path} is empty: {root} holds no images '
                                 f'of that split; convert it again '
                                 f'({convert})')
        _check_classes(cfg, name, dataset, root, release)


def _check_classes(cfg: Config, loader: str, dataset: dict, root: str,
                   release: str) -> None:
    """The converted dataset's classes (its ``dataset.json``) are those of
    the config's dataset class, and its model scores that many: another
    dataset's folder, or a ``num_classes`` changed on the command line,
    would train or score against the wrong labels."""
    from mmseg.registry import DATASETS

    from fashionseg.dataset_folder import META_FILE, read_dataset_meta
    dataset_class = DATASETS.get(str(dataset.get('type', '')))
    # The config's own metainfo wins, as it does for mmengine's datasets.
    expected = list((dataset.get('metainfo') or {}).get('classes') or (
        getattr(dataset_class, 'METAINFO', None) or {}).get('classes') or [])
    if expected and osp.isfile(osp.join(root, META_FILE)):
        meta = read_dataset_meta(root)
        if [str(c) for c in meta['classes']] != [str(c) for c in expected]:
            raise UsageError(
                f'{loader} reads {root}, a converted '
                f'{meta.get("name", "other")} dataset of '
                f'{len(meta["classes"])} classes, not the {release} '
                f'dataset of {len(expected)} the config is for')
    model = cfg.get('model') or {}
    for head in ('decode_head', 'auxiliary_head'):
        heads = model.get(head) or []
        for part in heads if isinstance(heads, list) else [heads]:
            count = part.get('num_classes')
            if expected and count is not None and count != len(expected):
                raise UsageError(
                    f'model.{head}.num_classes is {count!r}, but the '
                    f'{release} dataset has {len(expected)} classes')


def check_checkpoint(checkpoint: Optional[str]) -> None:
    if checkpoint and '://' not in str(checkpoint) and \
            not osp.isfile(checkpoint):
        raise UsageError(f'checkpoint {checkpoint} is a folder, not a '
                         'checkpoint file' if osp.isdir(checkpoint) else
                         f'checkpoint {checkpoint} does not exist')

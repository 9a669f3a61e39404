"""Small-model overrides and converted datasets for the training tests."""
from pathlib import Path

from raw_formats import (BUNDLED_CCP, fashionista_samples, write_cfpd,
                         write_fashionista_v7)

from custom_datasets.convert import convert_release

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'mmseg_configs'
MODELS = ('fpn_x101', 'semfpn_x101', 'pspnet_r101', 'fcn_r101')
DATASETS = ('cfpd', 'fashionista', 'ccp')

# Narrow backbones so that a CPU trains a few iterations in seconds; the
# layer structure (ResNeXt bottlenecks, FPN, heads) stays the configs' own.
_RESNEXT_SMALL = {
    'model.backbone.depth': 50, 'model.backbone.groups': 2,
    'model.backbone.base_channels': 16, 'model.backbone.stem_channels': 16,
    'model.neck.in_channels': [64, 128, 256, 512],
    'model.neck.out_channels': 32,
    'model.decode_head.in_channels': [32, 32, 32, 32],
    'model.decode_head.channels': 16,
}
_RESNET_D8_SMALL = {
    'model.backbone.depth': 18, 'model.backbone.base_channels': 16,
    'model.backbone.stem_channels': 16,
    'model.decode_head.in_channels': 128, 'model.decode_head.channels': 16,
    'model.auxiliary_head.in_channels': 64,
    'model.auxiliary_head.channels': 16,
}
SMALL_MODEL = {'fpn_x101': _RESNEXT_SMALL, 'semfpn_x101': _RESNEXT_SMALL,
               'pspnet_r101': _RESNET_D8_SMALL,
               'fcn_r101': _RESNET_D8_SMALL}


def data_options(data_root, train_images=4, val_images=2, batch_size=2):
    """Point all loaders at ``data_root``, in-process, on a few images."""
    options = {}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options[f'{loader}.dataset.data_root'] = str(data_root)
        options[f'{loader}.num_workers'] = 0
        options[f'{loader}.persistent_workers'] = False
    options['train_dataloader.batch_size'] = batch_size
    options['train_dataloader.dataset.indices'] = train_images
    options['val_dataloader.dataset.indices'] = val_images
    return options


def small_run_options(model, data_root, max_epochs=1, **data_kwargs):
    options = dict(SMALL_MODEL[model])
    options.update(data_options(data_root, **data_kwargs))
    options['train_cfg.max_epochs'] = max_epochs
    options['default_hooks.logger.interval'] = 1
    # A resumable checkpoint after every epoch of these short runs.
    options['default_hooks.checkpoint.interval'] = 1
    return options


def build_converted_datasets(root: Path, max_size: int = 160) -> dict:
    """Each dataset converted from files in its raw format, with images in
    every split, scaled to ``max_size`` pixels on their longer side: the
    tests that train and test on them run the same code on a few images
    whatever their size, and a CPU runs these in a tenth of the time of
    the photos' full size."""
    roots = {}
    raw = root / 'raw'
    (raw / 'fashionista').mkdir(parents=True)
    write_fashionista_v7(raw / 'fashionista' / 'fashionista-v1.0.mat',
                         fashionista_samples(14), [2, 5, 9])
    write_cfpd(raw / 'cfpd', count=25)  # 19 / 2 / 4 images
    sources = {'fashionista': raw / 'fashionista', 'cfpd': raw / 'cfpd',
               'ccp': BUNDLED_CCP}
    for name, src in sources.items():
        roots[name] = root / name
        convert_release(name, src, roots[name], max_size)
    return roots


def untrained_demo_model(root: Path, config: str) -> tuple:
    """The bundled CCP photos converted at 64 px into ROOT/ccp, and a
    checkpoint of ``config``'s model (a path under the repository) with
    its initial weights in ROOT/fpn.pth: for the tools' runs whose labels
    do not matter."""
    # Imported here: the other helpers need no model registry.
    import torch
    from mmengine.config import Config

    from fashionseg.inference.segmenter import build_model
    data = root / 'ccp'
    convert_release('ccp', BUNDLED_CCP, data, 64)
    checkpoint = root / 'fpn.pth'
    torch.manual_seed(0)
    model = build_model(Config.fromfile(str(REPO / config)), None)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    return data, checkpoint

"""Every GPU path of the harness, run for real, checked and timed in one
command (``make gpu-check``, ``tools/gpu_check.py``), from a checkout with
no network and no data but the bundled CCP photos.

Steps, each recorded as passed or failed (with its error) before the next
runs: ``stack``, ``train`` (the paper's FPN-X101 config at full size, from
scratch, a few epochs, a resume, and the training benchmark at batch 5
fp32 and 16 bf16), ``test`` (``tools/test.py --out``), ``crf`` (the
PyTorch CRF against pydensecrf on the trained model's scores, its speed at
600 x 400, and the paper's 50-trial search over 108 validation images),
``inference`` (the paper's protocol and the engine's settings) and
``projection`` (the whole ``make repro`` on this machine, from the rates
measured). ``quick`` runs the same steps at toy sizes with the demo's
narrow model, so that a CPU runs them in a minute or two.

The checkout's paths (its tools, the bundled photos, params.yaml) come
from the caller (:class:`CheckPaths`), so that the library never climbs
out of its package to find them.
"""
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
import yaml

from fashionseg.benchmarks.crf import (HEIGHT, NUM_CLASSES, WIDTH, agreement,
                                       benchmark_inputs,
                                       torch_images_per_second)
from fashionseg.benchmarks.engine_throughput import benchmark_engine
from fashionseg.benchmarks.inference import benchmark_inference
from fashionseg.benchmarks.training import benchmark_training
from fashionseg.crf.backend import CRFBackend
from fashionseg.crf.energy import CRFParams
from fashionseg.crf.items import split_items
from fashionseg.crf.search import sample_params, search
from fashionseg.dataset_folder import image_path, label_path
from fashionseg.inference.settings import InferenceSettings
from fashionseg.utils.device import device_name
from fashionseg.utils.environment import mmcv_ops_compiled

# (train, val, test) images of the real releases, as the converters split
# them (custom_datasets/splits.py): refined Fashionista's 685 photos with
# Tangseng et al.'s 229 test photos, CFPD's 2,682, CCP's 1,004.
RELEASE_SPLITS = {'fashionista': (411, 45, 229), 'cfpd': (2038, 108, 536),
                  'ccp': (703, 101, 200)}
PAPER_CRF_PARAMS = CRFParams(theta_alpha=40, theta_beta=13, w1=10)


@dataclass(frozen=True)
class CheckSizes:
    """How much each step runs."""
    config: str
    max_size: int
    epochs: int
    bench_iters: int
    bench_warmup: int
    bf16: bool
    crf_param_sets: int
    crf_batch_sizes: Tuple[int, ...]
    crf_batches: int
    search_trials: int
    search_images: int
    inference_images: int
    engine_batches: int
    workers: int
    engine: Tuple[str, ...] = field(default_factory=tuple)


FULL = CheckSizes(
    config='mmseg_configs/fpn_x101_ccp.py', max_size=0, epochs=3,
    bench_iters=50, bench_warmup=10, bf16=True, crf_param_sets=10,
    crf_batch_sizes=(1, 16, 64), crf_batches=4, search_trials=50,
    search_images=108, inference_images=20, engine_batches=100, workers=8,
    engine=('fp32,batch=16', 'bf16,batch=32', 'bf16,channels-last,batch=32',
            'bf16,channels-last,compile=max-autotune,batch=32'))
QUICK = CheckSizes(
    config='mmseg_configs/demo/fpn_x101_ccp.py', max_size=128, epochs=1,
    bench_iters=2, bench_warmup=1, bf16=False, crf_param_sets=2,
    crf_batch_sizes=(1,), crf_batches=1, search_trials=2, search_images=6,
    inference_images=2, engine_batches=2, workers=0,
    engine=('fp32,batch=2', 'fp32,channels-last,batch=2'))


@dataclass(frozen=True)
class CheckPaths:
    """Where the check finds the checkout's parts: the repository (its
    configs and ``tools/``), the bundled CCP photos it trains and tests
    on, and the pipeline's ``params.yaml`` it projects."""
    repo: Path
    photos: Path
    params: Path

    @classmethod
    def of_checkout(cls, repo: Path) -> 'CheckPaths':
        repo = Path(repo).resolve()
        return cls(repo, repo / 'tests' / 'data' / 'ccp_subset',
                   repo / 'params.yaml')


class CheckFailed(AssertionError):
    """A step ran but its result is wrong."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _data_options(data_root: Path, sizes: CheckSizes) -> dict:
    options = {'train_cfg.max_epochs': sizes.epochs,
               'default_hooks.checkpoint.interval': 1,
               'default_hooks.logger.interval': 1}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options[f'{loader}.dataset.data_root'] = str(data_root)
        options[f'{loader}.num_workers'] = sizes.workers
        options[f'{loader}.persistent_workers'] = sizes.workers > 0
    return options


class GPUCheck:
    """The steps, sharing what earlier ones produced (``self.state``)."""

    def __init__(self, out: Path, device: str, sizes: CheckSizes,
                 paths: CheckPaths):
        self.out, self.device, self.sizes = Path(out), device, sizes
        self.paths = paths
        self.work = self.out / 'work'
        self.state: Dict = {}

    def _tool(self, tool: str, *args) -> None:
        """Run one of the checkout's tools as a user would."""
        result = subprocess.run(
            [sys.executable, str(self.paths.repo / 'tools' / tool),
             *map(str, args)], cwd=self.paths.repo, capture_output=True,
            text=True)
        _require(result.returncode == 0,
                 f'tools/{tool} failed: {result.stderr[-1500:]}')

    def stack(self) -> dict:
        cuda = torch.cuda.is_available()
        record = dict(torch=torch.__version__, cuda=torch.version.cuda,
                      gpu=device_name(self.device),
                      mmcv_ops=mmcv_ops_compiled(),
                      cudnn=torch.backends.cudnn.version() if cuda else None)
        _require(record['mmcv_ops'], "mmcv's compiled ops do not load")
        _require(self.device == 'cpu' or cuda, 'torch sees no CUDA GPU')
        return record

    def train(self) -> dict:
        from fashionseg.runner.training import configure_training, train
        data = self.work / 'ccp'
        if not (data / 'dataset.json').is_file():
            self._tool('convert_data.py', 'ccp', '--src', self.paths.photos,
                       '--out', data, '--max-size', self.sizes.max_size)
        self.state['data'] = data
        config = str(self.paths.repo / self.sizes.config)
        options = _data_options(data, self.sizes)
        work_dir = self.work / 'train'
        started = time.perf_counter()
        cfg = configure_training(config, str(work_dir), options,
                                 pretrained=False)
        train(cfg, config)
        train_seconds = time.perf_counter() - started
        checkpoint = work_dir / f'epoch_{self.sizes.epochs}.pth'
        _require(checkpoint.is_file(), f'{checkpoint} was not written')
        # Resume from the last checkpoint for one more epoch.
        options['train_cfg.max_epochs'] = self.sizes.epochs + 1
        cfg = configure_training(config, str(work_dir), options,
                                 resume=True, pretrained=False)
        runner = train(cfg, config)
        _require(runner.epoch == self.sizes.epochs + 1,
                 f'the resumed run ended at epoch {runner.epoch}, not '
                 f'{self.sizes.epochs + 1}')
        resumed = work_dir / f'epoch_{self.sizes.epochs + 1}.pth'
        _require(resumed.is_file(), f'{resumed} was not written')
        self.state.update(config=config, checkpoint=str(resumed))
        bench = {}
        runs = [('fp32_batch5', False, 5)] + (
            [('bf16_batch16', True, 16)]
            if self.sizes.bf16 and self.device == 'cuda' else [])
        for name, amp, batch in runs:
            bench_options = dict(_data_options(data, self.sizes))
            bench_options['train_dataloader.batch_size'] = batch
            bench[name] = benchmark_training(
                config, str(self.work / f'bench_{name}'),
                self.sizes.bench_iters, self.sizes.bench_warmup, amp,
                bench_options)
        self.state['train_rates'] = {
            name: b['images_per_second_full_loop']
            for name, b in bench.items()}
        return dict(epochs=self.sizes.epochs, seconds=train_seconds,
                    resumed_to_epoch=runner.epoch, benchmark=bench)

    def test(self) -> dict:
        data, config = self.state['data'], self.state['config']
        started = time.perf_counter()
        self._tool('test.py', config, self.state['checkpoint'],
                   '--data-root', data, '--work-dir', self.work / 'test',
                   '--split', 'val', 'test',
                   '--out', self.work / 'scores_{split}',
                   '--metrics', self.work / 'runs' / '{split}.json',
                   '--batch-size', 8, '--device', self.device)
        seconds = time.perf_counter() - started
        written = {}
        for split in ('val', 'test'):
            stems = (data / 'splits' / f'{split}.txt').read_text().split()
            files = list((self.work / f'scores_{split}').glob('*.npz'))
            _require(len(files) == len(stems),
                     f'{len(files)} score files for {len(stems)} {split} '
                     'images')
            written[split] = len(files)
        metrics = json.loads((self.work / 'runs' / 'test.json').read_text())
        return dict(seconds=seconds, score_files=written,
                    test_aAcc=metrics['aAcc'])

    def crf(self) -> dict:
        data = self.state['data']
        items, classes = split_items(self.work / 'scores_test', data, 'test')
        params = sample_params(self.sizes.crf_param_sets, seed=0)
        agree = agreement(items, classes, params, self.device)
        _require(agree['min_agreement'] >= 0.99,
                 f'the PyTorch CRF labels only {agree["min_agreement"]:.4f}'
                 ' of the pixels as pydensecrf does')
        _require(agree['max_accuracy_difference'] <= 0.1,
                 'pixel accuracy differs from pydensecrf\'s by '
                 f'{agree["max_accuracy_difference"]:.3f} points')
        image, scores, _ = benchmark_inputs(
            sorted((self.paths.photos / 'photos').glob('*.jpg'))[0])
        rates = {str(b): torch_images_per_second(
            image, scores, self.device, b, self.sizes.crf_batches)
            for b in self.sizes.crf_batch_sizes}
        self.state['crf_rate'] = max(rates.values())
        cycled = self._cycled_split(self.sizes.search_images)
        backend = CRFBackend.choose('torch', self.device)
        started = time.perf_counter()
        result = search(cycled / 'scores', cycled / 'data', 'val',
                        self.sizes.search_trials, 0, backend=backend)
        search_seconds = time.perf_counter() - started
        self.state['search_params'] = CRFParams(**result['best'])
        return dict(agreement=agree, images_per_s=rates,
                    speed_shape=f'{HEIGHT} x {WIDTH}, {NUM_CLASSES} classes,'
                    ' 10 iterations', params=PAPER_CRF_PARAMS.as_dict(),
                    search=dict(trials=self.sizes.search_trials,
                                images=self.sizes.search_images,
                                seconds=search_seconds,
                                best=result['best']))

    def _cycled_split(self, count: int) -> Path:
        """A validation split of ``count`` images: the converted photos
        (all splits) and their scores, cycled under new names."""
        root = self.work / f'cycled_{count}'
        data, scores = root / 'data', root / 'scores'
        if root.is_dir():
            return root
        source = self.state['data']
        for sub in ('img_dir/val', 'ann_dir/val', 'splits'):
            (data / sub).mkdir(parents=True, exist_ok=True)
        scores.mkdir(parents=True)
        (data / 'dataset.json').write_bytes(
            (source / 'dataset.json').read_bytes())
        pairs = [(split, stem) for split in ('val', 'test') for stem in (
            source / 'splits' / f'{split}.txt').read_text().split()]
        stems = []
        for index in range(count):
            split, stem = pairs[index % len(pairs)]
            new = f'{index:04d}_{stem}'
            os.symlink(image_path(source, split, stem).resolve(),
                       image_path(data, 'val', new))
            os.symlink(label_path(source, split, stem).resolve(),
                       label_path(data, 'val', new))
            os.symlink((self.work / f'scores_{split}' / f'{stem}.npz')
                       .resolve(), scores / f'{new}.npz')
            stems.append(new)
        (data / 'splits' / 'val.txt').write_text('\n'.join(stems) + '\n')
        for split in ('train', 'test'):
            (data / 'splits' / f'{split}.txt').write_text('')
        return root

    def inference(self) -> dict:
        config, checkpoint = self.state['config'], self.state['checkpoint']
        data = self.state['data']
        params = self.state.get('search_params', PAPER_CRF_PARAMS)
        protocol = benchmark_inference(config, checkpoint, data, 'test',
                                       self.sizes.inference_images,
                                       self.device, params)
        settings = [InferenceSettings.parse(s) for s in self.sizes.engine]
        engine = benchmark_engine(config, checkpoint, data, settings,
                                  'test', self.device,
                                  self.sizes.engine_batches,
                                  crf_params=params)
        _require(engine['best'] is not None,
                 'no engine setting agrees with eager fp32')
        best = next(r for r in engine['settings']
                    if r['name'] == engine['best'])
        self.state['inference_rate'] = best['end_to_end_images_per_s']
        self.state['reference_rate'] = engine['settings'][0][
            'end_to_end_images_per_s']
        protocol.pop('environment', None)
        return dict(paper_protocol=protocol, engine=engine)

    def projection(self) -> dict:
        """The full ``make repro`` from the measured rates (every model
        taken at the paper FPN's rates; start-up and downloads left out)."""
        params = yaml.safe_load(self.paths.params.read_text())
        rates = self.state['train_rates']
        amp = params['train']['amp'] and 'bf16_batch16' in rates
        train_rate = rates['bf16_batch16' if amp else 'fp32_batch5']
        eval_rate = self.state['reference_rate']
        crf_rate = self.state['crf_rate']
        epochs, trials = params['train']['epochs'], params['crf']['trials']
        runs = len(params['models']) * len(params['seeds'])
        rows, total = [], 0.0
        for dataset in params['datasets']:
            n_train, n_val, n_test = RELEASE_SPLITS[dataset]
            seconds = dict(
                train=epochs * n_train / train_rate,
                validation=epochs * n_val / eval_rate,
                test=(n_val + n_test) / eval_rate,
                crf_search=trials * n_val / crf_rate,
                crf_apply=n_test / crf_rate)
            run = sum(seconds.values())
            total += run * runs
            rows.append(dict(dataset=dataset, runs=runs,
                             hours_per_run=run / 3600,
                             hours=run * runs / 3600, **{
                                 f'{k}_minutes_per_run': v / 60
                                 for k, v in seconds.items()}))
        return dict(rates=dict(train_images_per_s=train_rate,
                               train_precision='bf16' if amp else 'fp32',
                               test_images_per_s=eval_rate,
                               crf_images_per_s=crf_rate),
                    epochs=epochs, crf_trials=trials, datasets=rows,
                    total_hours=total / 3600)

    def steps(self) -> List[Tuple[str, Callable[[], dict]]]:
        return [('stack', self.stack), ('train', self.train),
                ('test', self.test), ('crf', self.crf),
                ('inference', self.inference),
                ('projection', self.projection)]

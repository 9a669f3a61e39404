"""The steps of ``make gpu-check``: every GPU path of the harness, run for
real on the bundled CCP photos at the paper's image size, checked and
timed (``tools/gpu_check.py``; :mod:`fashionseg.gpu_check.run` runs each
step in its own process within the time budget).

``stack`` (torch, CUDA, cuDNN, mmcv's ops), ``data`` (the photos converted
and resized once to 600 x 400, the size of Fashionista and CFPD, JPEG
re-encoded), ``train`` (the paper's FPN-X101 config from scratch, an epoch,
a resume to the next, and the training benchmark at batch 5 fp32 and batch
16 bf16, full loop and model only), ``test`` (``tools/test.py --out``),
``crf`` (the PyTorch CRF against pydensecrf on a few images and parameter
sets in a process pool, its speed, and part of the paper's 50 x 108 search,
projected to the whole), ``inference`` (the paper's protocol without
rerunning its CRF, whose cost comes from the crf step, and the engine's
settings) and ``projection`` (the whole ``make repro`` from the rates).

Each sub-measurement is appended to ``gpu_check.jsonl`` as it is made;
what later steps need (the data, the checkpoint, the rates) is kept in
``work/state.json``. The checkout's paths come from the caller
(:class:`CheckPaths`).
"""
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Tuple

from fashionseg.dataset_folder import (SPLITS, image_path, label_path,
                                       split_stems)
from fashionseg.utils.atomic_write import write_text_atomic

# Each step runs in a process of its own and imports what it uses in its
# method: a step's process then starts in a few seconds instead of the
# dozen that torch, MMSegmentation and OpenCV take together on a GPU
# machine, which would come out of every step's share of the budget.

# (train, val, test) images of the real releases, as the converters split
# them (custom_datasets/splits.py): refined Fashionista's 685 photos with
# Tangseng et al.'s 229 test photos, CFPD's 2,682, CCP's 1,004.
RELEASE_SPLITS = {'fashionista': (411, 45, 229), 'cfpd': (2038, 108, 536),
                  'ccp': (703, 101, 200)}
# Their photos' (height, width): Fashionista's and CFPD's all 600 x 400;
# CCP's mostly 825 x 550 (its models' operations are counted there).
RELEASE_IMAGE_SIZES = {'fashionista': (600, 400), 'cfpd': (600, 400),
                       'ccp': (825, 550)}
# The CRF parameters of the speed figures (fashionseg.benchmarks.crf).
PAPER_CRF_PARAMS = dict(theta_alpha=40, theta_beta=13, w1=10)
# The paper's search: 50 parameter sets over CFPD's 108 validation images.
PAPER_SEARCH = (50, 108)
# GPU counts the projection gives the grid's wall time for (make repro
# JOBS=N).
GRID_GPUS = (1, 2, 4, 8)
STEP_NAMES = ('stack', 'data', 'train', 'test', 'crf', 'inference',
              'projection')
# Each step's share of what is left of the budget when it starts.
STEP_WEIGHTS = {'stack': 1, 'data': 1.5, 'train': 10, 'test': 3.5,
                'crf': 3.5, 'inference': 6, 'projection': 0.5}
MEASUREMENTS = 'gpu_check.jsonl'


@dataclass(frozen=True)
class CheckSizes:
    """How much each step runs."""
    config: str
    image: Tuple[int, int]  # (height, width) every photo is resized to
    epochs: int
    bench_iters: int
    bench_warmup: int
    bf16: bool
    crf_images: int
    crf_param_sets: int
    crf_batch_sizes: Tuple[int, ...]
    crf_batches: int
    search_trials: int  # of the paper's 50, timed and projected
    search_images: int
    inference_images: int
    engine_batches: int
    workers: int
    engine: Tuple[str, ...] = field(default_factory=tuple)
    autotune: bool = False  # also bf16 training with cuDNN autotuning
    compile_train: bool = False  # also bf16 training compiled


FULL = CheckSizes(
    config='mmseg_configs/fpn_x101_ccp.py', image=(600, 400), epochs=1,
    bench_iters=20, bench_warmup=5, bf16=True, crf_images=4,
    crf_param_sets=3, crf_batch_sizes=(1, 16, 64), crf_batches=4,
    search_trials=2, search_images=108, inference_images=20,
    engine_batches=20, workers=8,
    engine=('fp32,batch=16', 'bf16,channels-last,batch=32',
            'bf16,channels-last,batch=32,decode=device'))
# Compiling the engine took 47 s for one shape on an H200: --long only.
LONG = CheckSizes(**dict(
    FULL.__dict__, bench_iters=50, bench_warmup=10, search_trials=50,
    engine_batches=100, autotune=True, compile_train=True,
    engine=FULL.engine + ('bf16,batch=32',
                          'bf16,channels-last,fold-bn,batch=32',
                          'bf16,channels-last,compile=default,batch=32',
                          'bf16,channels-last,compile=max-autotune,'
                          'batch=32',
                          # The engine's whole hot path: batch norms
                          # folded, compiled, CUDA graphs captured.
                          'bf16,channels-last,fold-bn,'
                          'compile=reduce-overhead,batch=32')))
QUICK = CheckSizes(
    config='mmseg_configs/demo/fpn_x101_ccp.py', image=(96, 64), epochs=1,
    bench_iters=2, bench_warmup=1, bf16=False, crf_images=2,
    crf_param_sets=2, crf_batch_sizes=(1,), crf_batches=1, search_trials=1,
    search_images=6, inference_images=2, engine_batches=2, workers=0,
    engine=('fp32,batch=2', 'fp32,channels-last,batch=2',
            'fp32,channels-last,batch=2,decode=device'))


def sizes_for(quick: bool, long: bool) -> CheckSizes:
    return QUICK if quick else LONG if long else FULL


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


def result_path(out: Path, name: str) -> Path:
    """Where a step's process leaves its result."""
    return Path(out) / 'work' / f'step_{name}.json'


def measurements(out: Path, name: str) -> dict:
    """What step ``name`` measured so far (``gpu_check.jsonl``)."""
    path = Path(out) / MEASUREMENTS
    found = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            if entry.get('step') == name:
                found[entry['key']] = entry['value']
    return found


def resize_photos(data: Path, size: Tuple[int, int]) -> list:
    """Every photo of a converted dataset resized to ``size`` (height,
    width; area averaging, JPEG re-encoded) and its label map with it
    (nearest neighbour), in place, in threads (Pillow's resizing and
    encoding release the interpreter); returns the sizes found before."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image
    height, width = size

    def resize(split_stem):
        photo, label = (image_path(data, *split_stem),
                        label_path(data, *split_stem))
        with Image.open(photo) as image:
            before = image.size[::-1]
            image.convert('RGB').resize(
                (width, height), Image.Resampling.BOX).save(
                    photo, format='JPEG', quality=95)
        with Image.open(label) as labels:
            labels.resize((width, height),
                          Image.Resampling.NEAREST).save(label, format='PNG')
        return before

    items = [(split, stem) for split in SPLITS
             for stem in split_stems(data, split)]
    with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
        return sorted(set(pool.map(resize, items)))


class GPUCheck:
    """The steps, sharing what earlier ones produced through
    ``work/state.json``."""

    def __init__(self, out: Path, device: str, sizes: CheckSizes,
                 paths: CheckPaths,
                 progress: Callable[[str], None] = print):
        self.out, self.device, self.sizes = Path(out), device, sizes
        self.paths, self.progress = paths, progress
        self.work = self.out / 'work'
        self.work.mkdir(parents=True, exist_ok=True)
        self.state_file = self.work / 'state.json'
        self.state: Dict = json.loads(self.state_file.read_text()) \
            if self.state_file.is_file() else {}
        self.step = None
        self.started = time.perf_counter()

    def measure(self, key: str, value):
        """Record one sub-measurement at once (a step cut short keeps
        it)."""
        entry = dict(step=self.step, key=key, value=value,
                     seconds=round(time.perf_counter() - self.started, 2))
        with open(self.out / MEASUREMENTS, 'a') as f:
            f.write(json.dumps(entry, default=str) + '\n')
        self.progress(f'[{self.step} {entry["seconds"]:6.1f} s] {key}: '
                      + json.dumps(value, default=str)[:160])
        return value

    def _save_state(self, **values) -> None:
        self.state.update(values)
        write_text_atomic(self.state_file,
                          json.dumps(self.state, indent=2) + '\n')

    def _needs(self, *keys):
        missing = [k for k in keys if k not in self.state]
        _require(not missing, f'needs {", ".join(missing)} from an earlier '
                 'step, which did not finish')
        return [self.state[k] for k in keys]

    def _tool(self, tool: str, *args) -> None:
        """Run one of the checkout's tools as a user would."""
        result = subprocess.run(
            [sys.executable, str(self.paths.repo / 'tools' / tool),
             *map(str, args)], cwd=self.paths.repo, capture_output=True,
            text=True)
        if result.returncode != 0:
            # The whole end in the step's log; in the record, the tool's
            # one-line error rather than the warnings above it.
            print(result.stderr[-3000:], file=sys.stderr)
            lines = [line for line in result.stderr.splitlines()
                     if line.strip()]
            errors = [line for line in lines if line.startswith('error:')]
            _require(False, f'tools/{tool} failed: ' + (
                errors[-1] if errors else lines[-1] if lines
                else f'exit status {result.returncode}'))

    def run(self, name: str) -> dict:
        """Run step ``name``; its result (passed, or failed with the
        error) goes to :func:`result_path` as well."""
        self.step = name
        try:
            result = dict(status='pass', **getattr(self, name)())
        except Exception as error:  # noqa: BLE001 (recorded, then go on)
            result = dict(status='fail',
                          error=f'{type(error).__name__}: {error}',
                          traceback=traceback.format_exc(limit=6))
        result['seconds'] = round(time.perf_counter() - self.started, 2)
        write_text_atomic(result_path(self.out, name),
                          json.dumps(result, indent=2, default=str) + '\n')
        return result

    def stack(self) -> dict:
        import torch

        from fashionseg.utils.device import device_name
        from fashionseg.utils.environment import (git_commit, machine_packages,
                                                  mmcv_ops_compiled,
                                                  package_versions)
        cuda = torch.cuda.is_available()
        record = dict(torch=torch.__version__, cuda=torch.version.cuda,
                      gpu=device_name(self.device),
                      mmcv_ops=mmcv_ops_compiled(),
                      cudnn=torch.backends.cudnn.version() if cuda else None)
        for key, value in record.items():
            self.measure(key, value)
        # What the figures were measured with, and what the machine had
        # before the harness (for the next wheelhouse's --have).
        record.update(python=platform.python_version(),
                      packages=package_versions(), git=git_commit(),
                      machine_packages=machine_packages())
        _require(record['mmcv_ops'], "mmcv's compiled ops do not load")
        _require(self.device == 'cpu' or cuda, 'torch sees no CUDA GPU')
        return record

    def data(self) -> dict:
        data = self.work / 'ccp'
        self._tool('convert_data.py', 'ccp', '--src', self.paths.photos,
                   '--out', data, '--max-size', max(self.sizes.image))
        before = resize_photos(data, self.sizes.image)
        self._save_state(data=str(data))
        counts = {split: len(split_stems(data, split)) for split in SPLITS}
        return dict(images=counts, size=list(self.sizes.image),
                    sizes_before=[list(s) for s in before])

    def _data_options(self, data: str) -> dict:
        options = {'train_cfg.max_epochs': self.sizes.epochs,
                   'default_hooks.checkpoint.interval': 1,
                   'default_hooks.logger.interval': 1}
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader'):
            options[f'{loader}.dataset.data_root'] = data
            options[f'{loader}.num_workers'] = self.sizes.workers
            # Workers kept alive outlive each runner and stall the next
            # one while they are torn down.
            options[f'{loader}.persistent_workers'] = False
        # One cuDNN policy for the check's runs: heuristics, no autotuning
        # (see train()).
        options['env_cfg.cudnn_benchmark'] = False
        return options

    def train(self) -> dict:
        from fashionseg.benchmarks.training import benchmark_training
        from fashionseg.runner.speedups import SAME_STEP
        from fashionseg.runner.training import configure_training, train
        data, = self._needs('data')
        config = str(self.paths.repo / self.sizes.config)
        options = self._data_options(data)
        work_dir = self.work / 'train'
        started = time.perf_counter()
        train(configure_training(config, str(work_dir), options,
                                 pretrained=False), config)
        self.measure('first_run_seconds', time.perf_counter() - started)
        checkpoint = work_dir / f'epoch_{self.sizes.epochs}.pth'
        _require(checkpoint.is_file(), f'{checkpoint} was not written')
        # Resume from the last checkpoint for one more epoch.
        options['train_cfg.max_epochs'] = self.sizes.epochs + 1
        runner = train(configure_training(config, str(work_dir), options,
                                          resume=True, pretrained=False),
                       config)
        resumed_to = self.measure('resumed_to_epoch', runner.epoch)
        del runner
        _require(resumed_to == self.sizes.epochs + 1,
                 f'the resumed run ended at epoch {resumed_to}, not '
                 f'{self.sizes.epochs + 1}')
        resumed = work_dir / f'epoch_{self.sizes.epochs + 1}.pth'
        _require(resumed.is_file(), f'{resumed} was not written')
        self._save_state(config=config, checkpoint=str(resumed))
        bench, rates = {}, {}
        # The paper's recipe as it is, then with the speed-ups that compute
        # the same step, then bf16 at batch 16 with them (the resizes in
        # fp32). All with cuDNN's heuristics: its autotuning took minutes
        # for one shape on an H200 in channels-last and in bf16
        # (fashionseg.runner.speedups); with --long, bf16 autotuned too.
        same = list(SAME_STEP)
        runs = [('fp32_batch5', False, 5, [], False),
                ('fp32_batch5_speedups', False, 5, same, False)]
        if self.sizes.bf16 and self.device == 'cuda':
            runs.append(('bf16_batch16', True, 16, same, False))
            if self.sizes.autotune:
                runs.append(('bf16_batch16_autotuned', True, 16, same, True))
            if self.sizes.compile_train:
                runs.append(('bf16_batch16_compiled', True, 16,
                             same + ['compile'], False))
        for name, amp, batch, speedups, autotune in runs:
            bench_options = dict(options, **{
                'train_dataloader.batch_size': batch,
                'env_cfg.cudnn_benchmark': autotune})
            bench[name] = self.measure(f'benchmark_{name}', benchmark_training(
                config, str(self.work / f'bench_{name}'),
                self.sizes.bench_iters, self.sizes.bench_warmup, amp,
                bench_options, speedups=speedups))
            rates[name] = bench[name]['images_per_second_full_loop']
            self._save_state(train_rates=rates)
        return dict(epochs=self.sizes.epochs, resumed_to_epoch=resumed_to,
                    image=list(self.sizes.image), benchmark=bench)

    def test(self) -> dict:
        data, config, checkpoint = self._needs('data', 'config',
                                               'checkpoint')
        started = time.perf_counter()
        self._tool('test.py', config, checkpoint,
                   '--data-root', data, '--work-dir', self.work / 'test',
                   '--split', 'val', 'test',
                   '--out', self.work / 'scores_{split}',
                   '--metrics', self.work / 'runs' / '{split}.json',
                   '--batch-size', 8, '--device', self.device)
        seconds = self.measure('seconds', time.perf_counter() - started)
        written = {}
        for split in ('val', 'test'):
            stems = split_stems(data, split)
            files = list((self.work / f'scores_{split}').glob('*.npz'))
            _require(len(files) == len(stems),
                     f'{len(files)} score files for {len(stems)} {split} '
                     'images')
            written[split] = len(files)
        metrics = json.loads((self.work / 'runs' / 'test.json').read_text())
        self._save_state(scores=str(self.work / 'scores_{split}'))
        return dict(seconds=seconds, score_files=written,
                    test_aAcc=metrics['aAcc'],
                    gflop_per_image=self._count_models())

    def _count_models(self) -> Dict[str, dict]:
        """The operations per image of the check's model at the check's
        size, and of every model and dataset the pipeline trains
        (``params.yaml``) at that dataset's size, for the projection, which
        scales the check's rates by them: the forward pass (what testing
        runs) and with the auxiliary heads (what training runs), in GFLOP,
        counted on the meta device (a second each). A model that cannot
        be counted is recorded with its error and left out."""
        import yaml

        from fashionseg.benchmarks.arithmetic import forward_flops_per_image
        params = yaml.safe_load(self.paths.params.read_text())
        configs = {'check': (self.paths.repo / self.sizes.config,
                             self.sizes.image)}
        configs.update({
            f'{model}_{dataset}': (
                self.paths.repo / params['configs'] /
                f'{model}_{dataset}.py',
                RELEASE_IMAGE_SIZES.get(dataset, self.sizes.image))
            for dataset in params['datasets'] for model in params['models']})
        counted = {}
        for name, (config, size) in configs.items():
            try:
                counted[name] = dict(
                    size=list(size),
                    forward=round(forward_flops_per_image(
                        str(config), size) / 1e9, 2),
                    training=round(forward_flops_per_image(
                        str(config), size, auxiliary=True) / 1e9, 2))
            except Exception as error:  # recorded; the rest still counted
                counted[name] = dict(error=f'{type(error).__name__}: '
                                     f'{error}'[:300])
            self._save_state(forward_gflop=counted)
        return self.measure('gflop_per_image', counted)

    def crf(self) -> dict:
        from fashionseg.benchmarks.crf import (NUM_CLASSES, agreement,
                                               benchmark_inputs,
                                               torch_images_per_second,
                                               write_truth_like_scores)
        from fashionseg.crf.backend import CRFBackend
        from fashionseg.crf.items import split_items
        from fashionseg.crf.search import sample_params, search
        data, = self._needs('data', 'scores')[:1]
        # The backends compared on scores the CRF changes (the check's
        # model, trained for two epochs, labels nearly every pixel as
        # background, and the CRF leaves that as it is).
        stems = split_stems(data, 'test')[:self.sizes.crf_images]
        write_truth_like_scores(data, 'test', stems,
                                self.work / 'scores_truth_like')
        items, classes = split_items(self.work / 'scores_truth_like', data,
                                     'test', max_images=len(stems))
        params = sample_params(self.sizes.crf_param_sets, seed=0)
        agree = self.measure('agreement', agreement(
            items, classes, params, self.device, workers=os.cpu_count()))
        self._save_state(pydensecrf_seconds_per_image=agree[
            'pydensecrf_seconds_per_image'])
        changed = max(row['changed_by_crf'] for row in agree['param_sets'])
        _require(changed >= 0.01,
                 f'the CRF changed only {changed:.2%} of the pixels: the '
                 'agreement says little')
        _require(agree['min_agreement'] >= 0.99,
                 f'the PyTorch CRF labels only {agree["min_agreement"]:.4f}'
                 ' of the pixels as pydensecrf does')
        _require(agree['max_accuracy_difference'] <= 0.1,
                 'pixel accuracy differs from pydensecrf\'s by '
                 f'{agree["max_accuracy_difference"]:.3f} points')
        image, scores, _ = benchmark_inputs(
            sorted((self.paths.photos / 'photos').glob('*.jpg'))[0])
        rates = {}
        for batch in self.sizes.crf_batch_sizes:
            rates[str(batch)] = self.measure(
                f'torch_images_per_s_batch{batch}', torch_images_per_second(
                    image, scores, self.device, batch,
                    self.sizes.crf_batches))
            self._save_state(crf_rate=max(rates.values()))
        cycled = self._cycled_split(self.sizes.search_images)
        backend = CRFBackend.choose('torch', self.device)
        started = time.perf_counter()
        result = search(cycled / 'scores', cycled / 'data', 'val',
                        self.sizes.search_trials, 0, backend=backend)
        seconds = time.perf_counter() - started
        trials, images = PAPER_SEARCH
        projected = seconds * trials * images / (
            self.sizes.search_trials * self.sizes.search_images)
        search_record = self.measure('search', dict(
            trials=self.sizes.search_trials,
            images=self.sizes.search_images, seconds=seconds,
            projected_seconds_50x108=projected, best=result['best']))
        self._save_state(search_params=result['best'])
        return dict(agreement=agree, images_per_s=rates,
                    speed_shape=f'600 x 400, {NUM_CLASSES} classes, 10 '
                    'iterations', params=PAPER_CRF_PARAMS,
                    search=search_record)

    def _cycled_split(self, count: int) -> Path:
        """A validation split of ``count`` images: the converted photos
        (validation and test) and their scores, cycled under new names."""
        root = self.work / f'cycled_{count}'
        data, scores = root / 'data', root / 'scores'
        if root.is_dir():
            return root
        source = Path(self.state['data'])
        for sub in ('img_dir/val', 'ann_dir/val', 'splits'):
            (data / sub).mkdir(parents=True, exist_ok=True)
        scores.mkdir(parents=True)
        (data / 'dataset.json').write_bytes(
            (source / 'dataset.json').read_bytes())
        pairs = [(split, stem) for split in ('val', 'test')
                 for stem in split_stems(source, split)]
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
        from fashionseg.benchmarks.engine_throughput import (benchmark_engine,
                                                             best_row)
        from fashionseg.benchmarks.inference import benchmark_inference
        from fashionseg.crf.energy import CRFParams
        from fashionseg.inference.jpeg_decoding import DeviceDecodingError
        from fashionseg.inference.settings import InferenceSettings
        config, checkpoint, data = self._needs('config', 'checkpoint',
                                               'data')
        params = CRFParams(**self.state.get('search_params',
                                            PAPER_CRF_PARAMS))
        # The paper's protocol: MMSegmentation's inference image by image;
        # its CRF (pydensecrf, one core) is not rerun here: its cost per
        # image comes from the crf step.
        protocol = benchmark_inference(config, checkpoint, data, 'test',
                                       self.sizes.inference_images,
                                       self.device)
        protocol.pop('environment', None)
        crf_seconds = self.state.get('pydensecrf_seconds_per_image')
        if crf_seconds is not None:
            protocol.update(
                crf_seconds_per_image=crf_seconds,
                crf_seconds_from='the crf step (pydensecrf, one core)',
                images_per_s_with_crf=1 / (
                    protocol['seconds_per_image'] + crf_seconds))
        self.measure('paper_protocol', protocol)
        # What the pipeline's validation and test stages run: fp32, one
        # image at a time.
        self._save_state(protocol_rate=protocol['images_per_s'])
        rows, best, end_to_end_crf = [], None, None
        for text in self.sizes.engine:
            setting = InferenceSettings.parse(text)
            if setting.compile != 'none' and best is not None and \
                    end_to_end_crf is None:
                # The CRF row before the compiled ones, whose compilation
                # takes the longest and may not fit the budget.
                end_to_end_crf = self._engine_with_crf(best, params)
            try:
                engine = benchmark_engine(config, checkpoint, data,
                                          [setting], 'test', self.device,
                                          self.sizes.engine_batches)
            except DeviceDecodingError as error:  # no torchvision
                self.measure(f'engine {text}', dict(skipped=str(error)))
                continue
            row = self.measure(f'engine {text}', engine['settings'][0])
            rows.append(row)
            if text == self.sizes.engine[0]:
                self._save_state(reference_rate=row[
                    'end_to_end_images_per_s'])
                # The check's model is trained for two epochs: its labels
                # are nearly all one class, and agreeing with them is easy.
                self.measure('reference pixels outside the most common '
                             'label', engine[
                                 'reference_outside_most_common_label'])
            best = best_row(rows)
        _require(best is not None, 'no engine setting agrees with eager '
                 'fp32')
        if end_to_end_crf is None:
            end_to_end_crf = self._engine_with_crf(best, params)
        return dict(paper_protocol=protocol, engine=dict(
            settings=rows, best=best['name'],
            end_to_end_with_crf_images_per_s=end_to_end_crf,
            crf=params.as_dict(), image=list(self.sizes.image)))

    def _engine_with_crf(self, best: dict, params) -> float:
        from fashionseg.benchmarks.engine_throughput import \
            benchmark_engine_with_crf
        from fashionseg.inference.settings import InferenceSettings
        config, checkpoint, data = self._needs('config', 'checkpoint',
                                               'data')
        # Only the CRF row: the setting's agreement and other rates are
        # measured already.
        return self.measure(
            'engine with CRF images/s end to end', benchmark_engine_with_crf(
                config, checkpoint, data, InferenceSettings.from_dict(best),
                params, 'test', self.device, self.sizes.engine_batches))

    def projection(self) -> dict:
        """The full ``make repro`` from the rates measured at 600 x 400,
        per dataset and model: training at the check's rate of the recipe
        ``params.yaml`` trains with, validation at the engine's fp32
        batched rate (the training's validation loop runs the engine in
        fp32, 8 images a pass) and testing at the paper protocol's (fp32,
        one image at a time, as the test stage runs; its score files
        left out), each scaled by the model's operations at its dataset's
        size against the check model's (with the auxiliary heads for
        training); start-up and downloads left out."""
        import yaml

        from fashionseg.pipeline.grid import grid_hours
        rates, crf_rate = self._needs('train_rates', 'crf_rate')
        validation_rate, = self._needs('reference_rate')
        test_rate = self.state.get('protocol_rate', validation_rate)
        counted = self.state.get('forward_gflop') or {}
        check = counted.get('check', {})
        params = yaml.safe_load(self.paths.params.read_text())
        train = params['train']
        speedups = [] if train.get('speedups') in (None, '', 'none') else \
            [n.strip() for n in str(train['speedups']).split(',')]
        if train['amp']:
            recipe = 'bf16_batch16_compiled' if 'compile' in speedups \
                and 'bf16_batch16_compiled' in rates else 'bf16_batch16'
        else:
            recipe = 'fp32_batch5_speedups' if speedups else 'fp32_batch5'
        _require(recipe in rates, f'no training rate of the recipe '
                 f'params.yaml trains with ({recipe})')
        train_rate = rates[recipe]
        epochs, trials = params['train']['epochs'], params['crf']['trials']
        seeds = len(params['seeds'])
        rows, total, run_hours = [], 0.0, []

        def scale(model: dict, kind: str):
            # A model costs its operations against the check's model.
            if model.get(kind) and check.get(kind):
                return check[kind] / model[kind]
            return None

        for dataset in params['datasets']:
            n_train, n_val, n_test = RELEASE_SPLITS[dataset]
            for model in params['models']:
                cost = counted.get(f'{model}_{dataset}', {})
                train_scale = scale(cost, 'training') or 1.0
                test_scale = scale(cost, 'forward') or 1.0
                seconds = dict(
                    train=epochs * n_train / (train_rate * train_scale),
                    validation=epochs * n_val / (validation_rate *
                                                 test_scale),
                    test=(n_val + n_test) / (test_rate * test_scale),
                    crf_search=trials * n_val / crf_rate,
                    crf_apply=n_test / crf_rate)
                run = sum(seconds.values())
                total += run * seeds
                run_hours += [run / 3600] * seeds
                rows.append(dict(
                    dataset=dataset, model=model, runs=seeds,
                    image=cost.get('size'),
                    forward_gflop_per_image=cost.get('forward'),
                    training_gflop_per_image=cost.get('training'),
                    # null: not counted, taken at the check model's rates.
                    train_rate_scale=None if scale(cost, 'training') is None
                    else round(train_scale, 3),
                    test_rate_scale=None if scale(cost, 'forward') is None
                    else round(test_scale, 3),
                    hours_per_run=run / 3600, hours=run * seeds / 3600, **{
                        f'{k}_minutes_per_run': v / 60
                        for k, v in seconds.items()}))
        return dict(rates=dict(train_images_per_s=train_rate,
                               train_recipe=recipe,
                               validation_images_per_s=validation_rate,
                               test_images_per_s=test_rate,
                               test_rate_from='paper protocol (fp32, batch 1)'
                               if 'protocol_rate' in self.state else
                               'engine fp32, batched',
                               crf_images_per_s=crf_rate),
                    image=list(self.sizes.image), epochs=epochs,
                    crf_trials=trials, datasets=rows,
                    total_hours=total / 3600,
                    # `make repro JOBS=N`: the runs side by side, one per
                    # GPU (tools/grid.py).
                    grid_hours={gpus: grid_hours(run_hours, gpus)
                                for gpus in GRID_GPUS})

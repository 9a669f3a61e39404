"""tools/benchmark_inference.py as a user runs it: with no --engine it
times the device's own engine setting beside the paper's protocol, the
agreement set can be bounded and says how many images it used, and
every phase shows its progress."""
import json

import pytest
from tool_process import run_tool
from training_helpers import untrained_demo_model

from fashionseg.inference.settings import InferenceSettings

FPN = 'mmseg_configs/demo/fpn_x101_ccp.py'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    return untrained_demo_model(tmp_path_factory.mktemp('benchmark'), FPN)


def _benchmark(setup, out, *args):
    data, checkpoint = setup
    return run_tool('benchmark_inference.py', FPN, checkpoint, '--data-root',
                    data, '--device', 'cpu', '--images', 1, '--batches', 1,
                    '--out', out, *args)


def test_the_engine_is_timed_by_default_with_a_bounded_agreement(
        setup, tmp_path):
    data, _ = setup
    result = _benchmark(setup, tmp_path / 'b.json', '--agreement-images', 2)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / 'b.json').read_text())
    engine = record['engine']
    default = InferenceSettings.device_default('cpu')
    assert [row['name'] for row in engine['settings']] == [default.name()]
    split = (data / 'splits' / 'test.txt').read_text().split()
    assert engine['agreement_images'] == 2
    assert engine['split_images'] == len(split) > 2
    assert engine['settings'][0]['agrees']
    for phase in ('paper protocol', 'agreement: eager fp32 labels',
                  f'{default.name()}: model only',
                  f'{default.name()}: end to end'):
        assert phase in result.stderr, phase
    assert '(2 images)' in result.stdout


def test_the_engine_with_the_crf_is_printed(setup, tmp_path):
    params = tmp_path / 'crf.json'
    params.write_text(json.dumps(
        {'best': {'theta_alpha': 40, 'theta_beta': 13, 'w1': 10}}))
    result = _benchmark(setup, tmp_path / 'b.json', '--agreement-images', 1,
                        '--crf-params', params)
    assert result.returncode == 0, result.stderr[-3000:]
    engine = json.loads((tmp_path / 'b.json').read_text())['engine']
    rate = engine['end_to_end_with_crf_images_per_s']
    assert f'engine {engine["best"]} with the PyTorch CRF: {rate:.2f} ' \
        'images/s end to end' in result.stdout


def test_engine_none_times_the_protocol_alone_and_a_zero_bound_is_refused(
        setup, tmp_path):
    result = _benchmark(setup, tmp_path / 'b.json', '--engine', 'none')
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / 'b.json').read_text())
    assert 'engine' not in record and record['images_per_s'] > 0
    result = _benchmark(setup, tmp_path / 'c.json', '--agreement-images', 0)
    assert result.returncode == 2
    assert 'must be at least 1, not 0' in result.stderr
    assert not (tmp_path / 'c.json').exists()


def test_a_device_decoded_row_is_checked_on_its_own_decoding(
        setup, torchvision_decoding_by_opencv):
    """A ``decode=device`` row decodes the JPEG bytes through torchvision
    (here OpenCV in its place: the same pixels as mmcv's) for its
    agreement, its end-to-end rate and its CRF row."""
    from fashionseg.benchmarks.engine_throughput import benchmark_engine
    from fashionseg.crf.energy import CRFParams
    data, checkpoint = setup
    setting = InferenceSettings.parse('fp32,batch=2,decode=device')
    record = benchmark_engine(FPN, str(checkpoint), data, [setting],
                              batches=1, warmup=0, agreement_images=3,
                              crf_params=CRFParams(40, 13, 10))
    row = record['settings'][0]
    assert row['decode'] == 'device' and row['name'] == setting.name()
    assert row['agreement'] == 1.0 and row['agrees']
    assert row['end_to_end_images_per_s'] > 0
    assert record['best'] == setting.name()
    assert record['end_to_end_with_crf_images_per_s'] > 0
    # The check before any row and each engine's own (one test image
    # each), the agreement (3 images in batches of 2), end to end and
    # with the CRF (one batch each): every call batched.
    assert torchvision_decoding_by_opencv == [1, 1, 2, 1, 2, 1, 2]


def test_decoding_on_the_device_without_torchvision_stops_before_any_work(
        setup, tmp_path):
    try:
        import torchvision.io  # noqa: F401
        pytest.skip('torchvision imports here')
    except ImportError:
        pass
    result = _benchmark(setup, tmp_path / 'b.json', '--engine',
                        'fp32,batch=1', 'fp32,batch=1,decode=device')
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: decode=device needs torchvision')
    assert 'Traceback' not in result.stderr
    assert 'paper protocol' not in result.stderr  # nothing ran before
    assert not (tmp_path / 'b.json').exists()


@pytest.mark.parametrize('ahead', [False, True])
@pytest.mark.parametrize('with_crf', [False, True])
def test_the_timed_window_decodes_and_counts_its_own_batches(
        setup, monkeypatch, with_crf, ahead):
    """End to end from JPEG bytes: the warm-up decodes its batches, the
    timed window starts with none of its own decoded and decodes exactly
    the batches it counts (the next batch is decoded ahead only within
    the same phase, as on a GPU; on the CPU, whose cores the model's
    threads use, between batches), with one batch in flight or with the
    CRF."""
    from concurrent.futures import ThreadPoolExecutor

    from fashionseg.benchmarks import engine_throughput, timing
    from fashionseg.crf.energy import CRFParams
    from fashionseg.dataset_folder import image_path
    from fashionseg.inference.segmenter import Segmenter
    data, checkpoint = setup
    assert not engine_throughput.decodes_ahead('cpu')
    assert engine_throughput.decodes_ahead('cuda')
    monkeypatch.setattr(engine_throughput, 'decodes_ahead',
                        lambda device: ahead)
    segmenter = Segmenter.from_config(
        FPN, str(checkpoint), settings=InferenceSettings(batch_size=2))
    prepared = []
    prepare = segmenter.prepare
    monkeypatch.setattr(segmenter, 'prepare', lambda image: (
        prepared.append(1), prepare(image))[1])
    at_start = []
    synchronize = timing.synchronize
    monkeypatch.setattr(timing, 'synchronize', lambda device: (
        at_start.append(len(prepared)), synchronize(device)))
    stems = (data / 'splits' / 'test.txt').read_text().split()
    jpegs = [image_path(data, 'test', stem).read_bytes() for stem in stems]
    warmup, batches = 2, 3
    with ThreadPoolExecutor(2) as pool:
        rate = engine_throughput._end_to_end(
            segmenter, jpegs, pool, batches, warmup, 'cpu',
            CRFParams(40, 13, 10) if with_crf else None)
    assert rate > 0
    assert at_start == [warmup * 2]
    assert len(prepared) == (warmup + batches) * 2


def test_each_row_says_what_fraction_of_the_gpus_peak_it_uses(
        setup, monkeypatch):
    """The network's operations per image are counted once, at the size
    the model-only rows time, and each row's rates are set against the
    peak of the GPU named (here a CPU taken for an H200) at the row's
    precision; on a device with no known peak the fractions are None."""
    import mmcv

    from fashionseg.benchmarks import engine_throughput
    from fashionseg.benchmarks.arithmetic import count_flops
    from fashionseg.dataset_folder import image_path, split_stems
    from fashionseg.inference.segmenter import Segmenter, build_model
    data, checkpoint = setup
    settings = [InferenceSettings.parse('fp32,batch=1'),
                InferenceSettings.parse('bf16,batch=1')]
    record = engine_throughput.benchmark_engine(
        FPN, str(checkpoint), data, settings[:1], batches=1, warmup=0,
        agreement_images=1)
    assert record['settings'][0]['fraction_of_peak_model_only'] is None
    # Counted independently: one photo of the split's most common size.
    photos = [mmcv.imread(image_path(data, 'test', stem))
              for stem in split_stems(data, 'test')]
    shapes = [photo.shape for photo in photos]
    photo = photos[shapes.index(max(set(shapes), key=shapes.count))]
    from mmengine.config import Config
    reference = Segmenter(build_model(Config.fromfile(FPN), str(checkpoint),
                                      'cpu'), Config.fromfile(FPN))
    prepared = reference.prepare(photo)
    flops = count_flops(lambda: reference.predict(
        [prepared['inputs']], [prepared['data_samples'].metainfo]))
    assert flops > 0
    assert record['gflop_per_image'] == round(flops / 1e9, 2)
    assert record['gflop_image_size'] == list(prepared['inputs'].shape[-2:])

    monkeypatch.setattr(engine_throughput, 'device_name',
                        lambda device: 'NVIDIA H200')
    record = engine_throughput.benchmark_engine(
        FPN, str(checkpoint), data, settings, batches=1, warmup=0,
        agreement_images=1)
    for row, peak in zip(record['settings'], (67.0, 989.0)):
        assert row['peak_tflops'] == peak
        for rate, fraction in (('model_images_per_s',
                                'fraction_of_peak_model_only'),
                               ('end_to_end_images_per_s',
                                'fraction_of_peak_end_to_end')):
            assert row[fraction] == round(
                row[rate] * flops / (peak * 1e12), 4)


def test_end_to_end_rows_warm_up_over_every_shape_where_shapes_cost():
    """Photos of several sizes, on a GPU (cuDNN tunes each new shape) or
    compiled: the end-to-end rows warm up over one pass of the split, so
    that no new shape is tuned inside the timed window; eager on the CPU,
    or photos of one size, keep the warm-up asked for."""
    import cv2
    import numpy as np

    from fashionseg.benchmarks.engine_throughput import (_photo_sizes,
                                                         end_to_end_warmup)
    eager = InferenceSettings.parse('bf16,batch=32')
    compiled = InferenceSettings.parse('fp32,compile=default,batch=4')
    assert end_to_end_warmup(eager, 1, 200, 3, 'cuda') == 3
    assert end_to_end_warmup(eager, 3, 200, 3, 'cuda') == 7
    assert end_to_end_warmup(eager, 3, 200, 3, 'cpu') == 3
    assert end_to_end_warmup(compiled, 2, 10, 3, 'cpu') == 3
    assert end_to_end_warmup(compiled, 2, 30, 3, 'cpu') == 8
    jpegs = [cv2.imencode('.jpg', np.zeros((h, w, 3), np.uint8))[1].tobytes()
             for h, w in ((60, 40), (60, 40), (64, 48))]
    assert _photo_sizes(jpegs) == {(60, 40), (64, 48)}

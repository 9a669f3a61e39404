"""The fast inference engine (fashionseg.inference.segmenter) and
tools/segment.py, on a small model trained on the bundled CCP photos."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import mmcv
import numpy as np
import pytest
import torch
from conftest import file_mode
from PIL import Image
from raw_formats import BUNDLED_CCP
from tool_process import run_tool
from training_helpers import CONFIG_DIR, REPO, SMALL_MODEL, data_options

from custom_datasets.convert import convert_release
from fashionseg.checkpoints.loading import CheckpointMismatchError
from fashionseg.inference.jpeg_decoding import DeviceDecodingError
from fashionseg.inference.photos import (MANIFEST, PhotoInputError,
                                         collect_photos, decoded_photos,
                                         plan_outputs, read_photo)
from fashionseg.inference.segmenter import (Segmenter, label_agreement,
                                            padded_size)
from fashionseg.inference.settings import AGREEMENT_BAR, InferenceSettings
from fashionseg.runner.training import configure_training, train


def _small_config(path: Path, base: str) -> Path:
    """A config file as a user writes one: the repository's config with a
    narrow backbone."""
    model = {}
    for key, value in SMALL_MODEL['semfpn_x101'].items():
        node = model
        parts = key.split('.')[1:]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    path.write_text(f'_base_ = [{str(CONFIG_DIR / base)!r}]\n'
                    f'model = {model!r}\n')
    return path


def _halve(data: Path) -> None:
    """The converted photos and label maps at half their size (labels by
    nearest neighbour), so that every test computes on a quarter of the
    pixels; the photos keep their several heights, so that they still
    pad to more than one network input."""
    for photo in (data / 'img_dir').rglob('*.jpg'):
        image = cv2.imread(str(photo))
        size = (round(image.shape[1] / 2), round(image.shape[0] / 2))
        cv2.imwrite(str(photo), cv2.resize(image, size,
                                           interpolation=cv2.INTER_AREA))
        labels = photo.parents[2] / 'ann_dir' / photo.parent.name / \
            f'{photo.stem}.png'
        cv2.imwrite(str(labels), cv2.resize(
            cv2.imread(str(labels), cv2.IMREAD_UNCHANGED), size,
            interpolation=cv2.INTER_NEAREST))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('engine')
    data = root / 'ccp'
    convert_release('ccp', BUNDLED_CCP, data)
    _halve(data)
    config = str(_small_config(root / 'small_semfpn_ccp.py',
                               'semfpn_x101_ccp.py'))
    options = data_options(data, train_images=8)
    # Trained enough that its labels are not coin flips between near-equal
    # scores, which no reduced precision could be held to.
    options.update({'train_cfg.max_epochs': 6,
                    'optim_wrapper.optimizer.lr': 5e-3})
    cfg = configure_training(config, work_dir=str(root / 'work'),
                             pretrained=False, cfg_options=options)
    train(cfg, config)
    stems = (data / 'splits' / 'test.txt').read_text().split()
    photos = [data / 'img_dir' / 'test' / f'{stem}.jpg' for stem in stems]
    return config, str(root / 'work' / 'epoch_6.pth'), data, photos


def _photos_of_varied_size(photos, tmp_path):
    """The test photos plus crops whose sides are not multiples of 32."""
    images = [mmcv.imread(str(p)) for p in photos]
    images.append(images[0][:301, :197].copy())
    images.append(images[1][5:418, 3:350].copy())
    return images


def test_engine_labels_are_mmsegmentations(trained, tmp_path):
    """Eager fp32 through the engine labels every pixel as
    mmseg.apis.inference_model does, one at a time or batched across
    images of different sizes (padding and cropping per size)."""
    from mmseg.apis import inference_model, init_model
    config, checkpoint, _, photos = trained
    images = _photos_of_varied_size(photos, tmp_path)
    model = init_model(config, checkpoint, device='cpu')
    expected = [inference_model(model, image).pred_sem_seg.data[0]
                for image in images]
    for batch_size in (1, 3):
        segmenter = Segmenter.from_config(
            config, checkpoint, settings=InferenceSettings(
                batch_size=batch_size))
        predictions = segmenter.predict(
            *zip(*[(p['inputs'], p['data_samples'].metainfo) for p in
                   map(segmenter.prepare, images)]))
        for image, prediction, labels in zip(images, predictions, expected):
            assert prediction.labels.dtype == torch.uint8
            assert tuple(prediction.labels.shape) == image.shape[:2]
            assert torch.equal(prediction.labels.long(), labels.long())


def test_images_of_one_padded_size_share_one_forward_pass(trained):
    """Photos of different sizes that pad to one network input run as one
    batch (one shape to compile or autotune), each labelled as when it
    runs alone: what lies outside each photo is padding, as alone."""
    config, checkpoint, _, photos = trained
    image = mmcv.imread(str(photos[0]))
    # The semantic FPN pads to multiples of 32: all pad to 320 x 224.
    images = [image[:h, :w].copy() for h, w in
              ((320, 224), (301, 197), (301, 224), (290, 210), (301, 197))]
    alone = Segmenter.from_config(config, checkpoint).segment(
        images, keep_scores=True)
    together = Segmenter.from_config(config, checkpoint,
                                     settings=InferenceSettings(
                                         batch_size=8))
    shapes = []
    forward = together.forward
    together.forward = lambda batch, *args: (
        shapes.append(tuple(batch.shape)), forward(batch, *args))[1]
    predictions = together.segment(images, keep_scores=True)
    assert shapes == [(5, 3, 320, 224)]
    for image, one, batched in zip(images, alone, predictions):
        assert tuple(batched.labels.shape) == image.shape[:2]
        assert torch.equal(one.labels, batched.labels)
        # The scores too, over the whole padded input: the padding is the
        # padding value after normalisation, as alone (normalised zeros
        # would differ from it by the mean over the deviation).
        torch.testing.assert_close(batched.decode_scores,
                                   one.decode_scores, rtol=1e-5, atol=1e-5)


def test_a_compiled_setting_runs_every_pass_at_the_full_batch(trained):
    """Under torch.compile the last, partial batch of a padded size is
    filled up to the batch size (one shape, one graph, for a dataset of
    one size), and each photo keeps the labels it has alone."""
    config, checkpoint, _, photos = trained
    image = mmcv.imread(str(photos[0]))
    images = [image[:h, :w].copy() for h, w in
              ((190, 128), (180, 120), (170, 110), (190, 125), (185, 100))]
    alone = Segmenter.from_config(config, checkpoint).segment(images)
    compiled = Segmenter.from_config(
        config, checkpoint, settings=InferenceSettings.parse(
            'fp32,compile=default,batch=4'))
    shapes, sizes = [], []
    # The graph's function itself, uncompiled: what it is given is the
    # point here (test_fast_settings_agree_with_eager_fp32 compiles it):
    # one shape, and the images' own sizes as values.
    compiled.forward = lambda batch, own, *args: (
        shapes.append(tuple(batch.shape)), sizes.append(own.tolist()),
        compiled._forward(batch, own, *args))[2]
    predictions = compiled.segment(images)
    assert shapes == [(4, 3, 192, 128)] * 2
    assert sizes == [[[190, 128], [180, 120], [170, 110], [190, 125]],
                     [[185, 100]] * 4]
    assert len(predictions) == len(images)
    for image, one, batched in zip(images, alone, predictions):
        assert tuple(batched.labels.shape) == image.shape[:2]
        assert torch.equal(one.labels, batched.labels)


def _streamed_and_predicted(segmenter, batches):
    """Each batch's labels through ``segmenter.stream`` and one batch at a
    time through ``predict`` (labels to the host)."""
    prepared = [[segmenter.prepare(image) for image in batch]
                for batch in batches]
    pairs = [([p['inputs'] for p in batch],
              [p['data_samples'].metainfo for p in batch])
             for batch in prepared]
    taken = []

    def given():
        for pair in pairs:
            taken.append(len(taken))
            yield pair

    streamed = []
    for predictions in segmenter.stream(given()):
        # Read as they come (a copy), as a caller reads them.
        streamed.append([p.labels.clone() for p in predictions])
        # One batch in flight: the next one was taken before this one's
        # labels came back (the last one has no next).
        assert len(taken) == min(len(streamed) + 1, len(pairs))
    predicted = [[p.labels for p in segmenter.predict(*pair, to_host=True)]
                 for pair in pairs]
    return streamed, predicted


def test_streamed_batches_are_labelled_as_one_at_a_time(trained):
    """Segmenter.stream, the end-to-end path with one batch in flight,
    gives each batch, in order, the labels predict gives it: batches of
    one size, of several padded sizes, with photos whose own size is not
    their padded one, and a last, smaller batch."""
    config, checkpoint, _, photos = trained
    images = _photos_of_varied_size(photos, None)
    batches = [images[0:3], images[3:5], images[5:-1], images[-1:]]
    assert all(batches) and len(batches[2]) > 1, len(images)
    segmenter = Segmenter.from_config(
        config, checkpoint, settings=InferenceSettings(batch_size=3))
    streamed, predicted = _streamed_and_predicted(segmenter, batches)
    assert [len(labels) for labels in streamed] == [
        len(batch) for batch in batches]
    for stream_labels, predict_labels, batch in zip(streamed, predicted,
                                                    batches):
        for one, other, image in zip(stream_labels, predict_labels, batch):
            assert one.device.type == 'cpu'
            assert tuple(one.shape) == image.shape[:2]
            assert torch.equal(one, other)
    assert list(segmenter.stream(iter(()))) == []


def test_a_batch_that_cannot_be_taken_comes_after_the_one_in_flight(
        trained):
    """A damaged photo in the third batch: the caller still gets the
    second batch's labels (to write them), then the error."""
    config, checkpoint, _, photos = trained
    images = _photos_of_varied_size(photos, None)[:4]
    segmenter = Segmenter.from_config(
        config, checkpoint, settings=InferenceSettings(batch_size=2))

    def batches():
        yield segmenter.prepare_batch(images[:2])
        yield segmenter.prepare_batch(images[2:])
        raise ValueError('photo 5 is damaged')

    got = []
    with pytest.raises(ValueError, match='photo 5 is damaged'):
        for predictions in segmenter.stream(batches()):
            got.append(len(predictions))
    assert got == [2, 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_streamed_batches_on_a_gpu_are_the_hosts_labels(trained):
    """On a GPU (side-stream copies from pinned memory, labels back
    without waiting): the labels of eager fp32 on the host, in order, and
    the same as predict's, with the copies and the forward passes slowed
    down so that a missing wait would be seen."""
    config, checkpoint, _, photos = trained
    images = _photos_of_varied_size(photos, None)
    batches = [images[i:i + 2] for i in range(0, len(images), 2)]
    host = Segmenter.from_config(config, checkpoint,
                                 settings=InferenceSettings(batch_size=2))
    gpu = Segmenter.from_config(config, checkpoint, device='cuda',
                                settings=InferenceSettings(batch_size=2))
    to_device, forward = gpu._to_device, gpu.forward

    def slow_copy(batch):
        with torch.cuda.stream(gpu._copy_stream):
            torch.cuda._sleep(50_000_000)
        return to_device(batch)

    def slow_forward(*args):
        torch.cuda._sleep(100_000_000)
        return forward(*args)

    gpu._to_device, gpu.forward = slow_copy, slow_forward
    streamed, predicted = _streamed_and_predicted(gpu, batches)
    for stream_labels, predict_labels in zip(streamed, predicted):
        assert all(torch.equal(one, other) for one, other in
                   zip(stream_labels, predict_labels))
    expected = [[p.labels for p in host.segment(batch)] for batch in batches]
    reference = [label for labels in expected for label in labels]
    flat = [label for batch in streamed for label in batch]
    assert all(label.device.type == 'cpu' for label in flat)
    assert label_agreement(reference, flat) >= AGREEMENT_BAR


@pytest.mark.parametrize('setting', [
    'fp32,channels-last,batch=2', 'bf16,batch=2', 'fp16,batch=2',
    'tf32,batch=2',
    # One graph compiled by inductor: about 40 s on one core (the graphs
    # of further padded sizes: test_a_compiled_setting_compiles_one_
    # graph_per_padded_size).
    pytest.param('fp32,compile=default,batch=2', marks=pytest.mark.slow),
    'fp32,fold-bn,batch=2', 'bf16,channels-last,fold-bn,batch=2'])
def test_fast_settings_agree_with_eager_fp32(trained, setting):
    config, checkpoint, _, photos = trained
    images = [mmcv.imread(str(p)) for p in photos]
    if 'compile' in setting:
        # The photos of the most common padded size, of several own
        # sizes, more than a batch (a full pass and a filled one).
        padded = [padded_size(*image.shape[:2], size_divisor=32)
                  for image in images]
        common = max(set(padded), key=padded.count)
        images = [image for image, size in zip(images, padded)
                  if size == common]
        assert len(images) > 2 and len({i.shape for i in images}) > 1
    reference = Segmenter.from_config(config, checkpoint).segment(images)
    settings = InferenceSettings.parse(setting)
    try:
        fast = Segmenter.from_config(config, checkpoint,
                                     settings=settings).segment(images)
    except RuntimeError as error:  # a precision this CPU cannot run
        pytest.skip(f'{setting} does not run here: {error}')
    agreement = label_agreement([p.labels for p in reference],
                                [p.labels for p in fast])
    assert agreement >= AGREEMENT_BAR, setting


def test_a_compiled_setting_compiles_one_graph_per_padded_size(
        trained, monkeypatch):
    """Under torch.compile (here dynamo with its eager backend, counting
    graphs; inductor's numerics: test_fast_settings_agree_with_eager_fp32)
    images of several own sizes but one padded size, in full and filled
    passes, share one graph, and each further padded size compiles one
    more; the labels are eager's."""
    from torch._dynamo.testing import CompileCounter
    config, checkpoint, _, photos = trained
    image = mmcv.imread(str(photos[0]))
    one_size = [image[:h, :w].copy() for h, w in
                ((190, 128), (180, 120), (170, 110), (190, 125), (185, 100))]
    another = [image[:h, :w].copy() for h, w in ((220, 128), (200, 101))]
    counter = CompileCounter()
    compile_ = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda fn, mode, dynamic: compile_(
        fn, backend=counter, dynamic=dynamic))
    torch._dynamo.reset()  # nothing compiled by another test is reused
    try:
        compiled = Segmenter.from_config(
            config, checkpoint, settings=InferenceSettings.parse(
                'fp32,compile=default,batch=2'))
        eager = Segmenter.from_config(config, checkpoint)
        for images, graphs in ((one_size, 1), (another, 2),
                               (one_size + another, 2)):
            labels = [p.labels for p in compiled.segment(images)]
            assert counter.frame_count == graphs
            for one, other in zip(labels, eager.segment(images)):
                assert torch.equal(one, other.labels)
    finally:
        torch._dynamo.reset()


def test_settings_parse_and_refuse():
    assert InferenceSettings.parse(
        'bf16,channels-last,compile=max-autotune,batch=32') == \
        InferenceSettings('bf16', True, 'max-autotune', 32)
    folded = InferenceSettings.parse('fp32,fold-bn,batch=4')
    assert folded.fold_bn and not folded.is_reference
    assert InferenceSettings.from_dict(
        dict(folded.as_dict(), name='x', agreement=1.0)) == folded
    for bad, why in (
            ('fp8', "begins with 'fp8', not a precision"),
            ('compile=default', "begins with 'compile=default'"),
            ('fp32,batch=0', "'batch=0' in the inference setting"),
            ('fp32,compile=fast', "'compile=fast' in"), ('fp32,cl', "'cl'"),
            ('fp32,decode=gpu', "'decode=gpu'"), ('', 'an empty inference'),
            ('bf16,,batch=2', 'an empty item'), ('fp32,', 'an empty item'),
            ('fp32,batch=2,batch=4', 'batch twice'),
            ('fp32,fold-bn,fold-bn', 'fold-bn twice')):
        with pytest.raises(ValueError, match=why):
            InferenceSettings.parse(bad)
    on_device = InferenceSettings.parse('fp32,batch=2,decode=device')
    assert on_device.decode == 'device' and not on_device.is_reference
    assert on_device.name() == 'fp32 decode-device batch 2'
    assert InferenceSettings.from_dict(on_device.as_dict()) == on_device


def test_decoding_on_the_device_gives_the_engine_mmcvs_images(
        trained, request):
    config, checkpoint, _, photos = trained
    jpegs = [p.read_bytes() for p in photos[:3]]
    host = Segmenter.from_config(config, checkpoint,
                                 settings=InferenceSettings(batch_size=3))
    try:
        import torchvision.io  # noqa: F401
    except ImportError:
        with pytest.raises(DeviceDecodingError, match='needs torchvision'):
            Segmenter(host.source_model, host.cfg, InferenceSettings(
                batch_size=3, decode='device'))
        calls = request.getfixturevalue('torchvision_decoding_by_opencv')
    else:
        calls = None
    device = Segmenter(host.source_model, host.cfg,
                       InferenceSettings(batch_size=3, decode='device'))
    inputs, metas = device.decode(jpegs)
    host_inputs, host_metas = host.decode(jpegs)
    # The setting's check decodes one test image; the photos, one
    # batched call.
    assert calls in (None, [1, 3])
    for image, expected, meta, expected_meta in zip(
            inputs, host_inputs, metas, host_metas):
        assert image.dtype == torch.uint8 and image.shape == expected.shape
        if calls is not None:  # the same decoder: the same pixels
            assert torch.equal(image, expected)
        assert meta['ori_shape'] == tuple(expected_meta['ori_shape'][:2])
    labels = [p.labels for p in device.predict(inputs, metas)]
    reference = [p.labels for p in host.segment(
        [mmcv.imfrombytes(data) for data in jpegs])]
    agreement = label_agreement(reference, labels)
    assert agreement == 1.0 if calls is not None else \
        agreement >= AGREEMENT_BAR
    # A photo left unrotated by the device's decoder agrees nowhere.
    assert label_agreement(reference, [labels[0].T] + labels[1:],
                           other_shapes_disagree=True) == pytest.approx(
        1 - reference[0].numel() / sum(r.numel() for r in reference))
    with pytest.raises(ValueError, match='differ'):
        label_agreement(reference, [labels[0].T] + labels[1:])
    # A pipeline that transforms the decoded image runs on the host only.
    resizing = copy.deepcopy(host.cfg)
    resizing.test_pipeline = [dict(type='LoadImageFromFile'),
                              dict(type='Resize', scale=(64, 64)),
                              dict(type='PackSegInputs')]
    with pytest.raises(DeviceDecodingError, match='also has Resize'):
        Segmenter(host.source_model, resizing,
                  InferenceSettings(decode='device'))


def test_decode_scores_are_the_score_files(trained, tmp_path):
    """keep_scores gives what tools/test.py --out saves for the CRF; the
    metrics file says which engine setting ran and how it was checked
    against eager fp32."""
    from fashionseg.evaluation.score_files import load_scores
    from fashionseg.runner.testing import configure_testing, run_test
    config, checkpoint, data, photos = trained
    out = tmp_path / 'scores'
    cfg = configure_testing(config, checkpoint, str(tmp_path / 'work'),
                            str(out), data_options(data),
                            settings=InferenceSettings(
                                channels_last=True, batch_size=2),
                            check_agreement=True)
    record = run_test(cfg, config, checkpoint)
    check = record['engine'].pop('agreement_check')
    assert record['engine'] == dict(settings='fp32 channels-last batch 2')
    assert check['used'] == check['asked'] == 'fp32 channels-last batch 2'
    assert check['agreement'] >= AGREEMENT_BAR
    assert check['checked_images'] == 2
    record['engine']['agreement_check'] = check
    assert json.loads((out / 'metrics.json').read_text())['engine'] == \
        record['engine']
    segmenter = Segmenter.from_config(config, checkpoint)
    for photo, prediction in zip(photos, segmenter.segment(
            [mmcv.imread(str(p)) for p in photos], keep_scores=True)):
        saved = load_scores(out / f'{photo.stem}.npz')
        assert (saved['input_height'], saved['input_width']) == \
            prediction.input_shape
        np.testing.assert_allclose(
            saved['scores'].astype(np.float32),
            prediction.decode_scores.numpy(), rtol=2e-3, atol=2e-3)


def test_strict_weights(trained, tmp_path):
    """A checkpoint for another class count is refused by name."""
    config, checkpoint, _, _ = trained
    other = _small_config(tmp_path / 'small_semfpn_cfpd.py',
                          'semfpn_x101_cfpd.py')
    with pytest.raises(CheckpointMismatchError,
                       match=r'conv_seg\.(bias|weight).*59.*23'):
        Segmenter.from_config(str(other), checkpoint)


def _segment(*args):
    return run_tool('segment.py', *args, '--device', 'cpu')


def test_segment_tool(trained, tmp_path):
    config, checkpoint, data, photos = trained
    folder = tmp_path / 'mine'
    folder.mkdir()
    for photo in photos[:3]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    single = photos[3]
    crf = tmp_path / 'crf.json'
    crf.write_text(json.dumps(
        {'best': {'theta_alpha': 40, 'theta_beta': 13, 'w1': 10}}))
    segmenter = Segmenter.from_config(config, checkpoint)
    palette = segmenter.model.dataset_meta['palette']
    for extra in ([], ['--crf', crf]):
        out = tmp_path / ('crf' if extra else 'plain')
        result = _segment(config, checkpoint, folder, single, '--out', out,
                          '--batch-size', 2, *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        names = sorted(p.name for p in out.iterdir())
        stems = sorted(p.stem for p in photos[:4])
        assert names == sorted([f'{s}.png' for s in stems]
                               + [f'{s}_overlay.png' for s in stems]
                               + [MANIFEST])
        for photo in photos[:4]:
            image = read_photo(photo)
            labels = Image.open(out / f'{photo.stem}.png')
            assert labels.mode == 'P'
            assert labels.size == (image.shape[1], image.shape[0])
            assert labels.getpalette()[:6] == [c for colour in palette[:2]
                                               for c in colour]
            overlay = cv2.imread(str(out / f'{photo.stem}_overlay.png'))
            assert overlay.shape == (image.shape[0], 2 * image.shape[1], 3)
            if not extra:
                expected = segmenter.segment([image])[0].labels.numpy()
                np.testing.assert_array_equal(np.asarray(labels), expected)
    # On the CPU the CRF is pydensecrf's, the faster there.
    settings = json.loads((tmp_path / 'crf' / MANIFEST).read_text())[
        'settings']
    assert settings['crf_backend'] == 'pydensecrf'
    # The CRF changes some labels (its smoothing), not the map's size.
    plain = np.asarray(Image.open(tmp_path / 'plain' / f'{single.stem}.png'))
    refined = np.asarray(Image.open(tmp_path / 'crf' / f'{single.stem}.png'))
    assert plain.shape == refined.shape


def test_segment_tool_errors(trained, tmp_path):
    config, checkpoint, data, photos = trained
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('no photos here')
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a jpeg')
    other = _small_config(tmp_path / 'small_semfpn_cfpd.py',
                          'semfpn_x101_cfpd.py')
    bad_crf = tmp_path / 'crf.json'
    bad_crf.write_text(json.dumps(
        {'best': {'theta_alpha': 40, 'theta_beta': '13', 'w1': 10}}))
    cases = [
        ((config, checkpoint, empty), f'{empty}: the folder holds no images'),
        ((config, checkpoint, tmp_path / 'nowhere.jpg'),
         'nowhere.jpg: no such file or folder'),
        ((config, checkpoint, photos[0], broken), 'broken.jpg: not an image'),
        ((other, checkpoint, photos[0]), 'does not fit the model'),
        ((config, tmp_path / 'missing.pth', photos[0]),
         'missing.pth does not exist'),
        ((config, checkpoint, photos[0], '--crf', bad_crf), 'theta_beta'),
    ]
    for args, message in cases:
        out = tmp_path / 'out'
        result = _segment(*args, '--out', out)
        assert result.returncode != 0, args
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith('error: ') and message in last, \
            result.stderr[-2000:]
        assert 'Traceback' not in result.stderr
    # A run that stops before its first photo's outputs leaves no folder
    # it made (it would hold a segment.json of nothing).
    result = _segment(config, checkpoint, broken, '--out', tmp_path / 'new')
    assert result.returncode == 2 and not (tmp_path / 'new').exists()
    # Two photos that would write the same file.
    twin = tmp_path / 'twin'
    twin.mkdir()
    (twin / photos[0].name).write_bytes(photos[0].read_bytes())
    found, _ = collect_photos([photos[0], twin])
    with pytest.raises(PhotoInputError, match=r'would both be written as '
                       r'\S+; rename'):
        plan_outputs(found, tmp_path / 'out')
    # Names that differ in case only: one file where case is not told
    # apart (refused everywhere, so that a folder means the same there).
    cases = tmp_path / 'cases'
    cases.mkdir()
    for name in ('A.jpg', 'a.jpg'):
        (cases / name).write_bytes(photos[0].read_bytes())
    with pytest.raises(PhotoInputError, match='where the case of letters is '
                       'not told apart'):
        plan_outputs(sorted(cases.iterdir()), tmp_path / 'out')
    # A name the file system takes for the photo, but not with the
    # overlay's suffix: refused before the model loads, not mid-run.
    long = tmp_path / ('x' * 245 + '.jpg')
    long.write_bytes(photos[0].read_bytes())
    line = _error_line(_segment(config, checkpoint, long, '--out',
                                tmp_path / 'long_out'))
    assert f'{long}: its overlay\'s name (257 bytes) would be longer than ' \
        'the file system allows in --out (255)' in line
    assert not (tmp_path / 'long_out').exists()


# Nothing of the user's is lost: tools/segment.py on real folders, as a
# user runs it, with every input file's hash compared before and after.

def _hashes(*folders):
    import hashlib
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(Path(folder).rglob('*'))
            if p.is_file()}


def _error_line(result):
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith('error: '), result.stderr[-2000:]
    return lines[-1]


def _copy(photos, folder, suffix=None):
    folder.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        name = photo.stem + (suffix or photo.suffix)
        if suffix == '.png':
            Image.open(photo).save(folder / name)
        else:
            (folder / name).write_bytes(photo.read_bytes())
    return folder


def test_segment_never_writes_over_a_photo_or_another_output(trained,
                                                             tmp_path):
    config, checkpoint, _, photos = trained
    # --out is the folder of PNG photos: each output would replace one.
    pngs = _copy(photos[:2], tmp_path / 'pngs', '.png')
    before = _hashes(pngs)
    line = _error_line(_segment(config, checkpoint, pngs, '--out', pngs))
    assert 'would replace the input photo' in line
    assert _hashes(pngs) == before
    # The same folder of JPEGs: the outputs would not replace a photo,
    # but the folder holds files the tool did not write.
    jpegs = _copy(photos[:2], tmp_path / 'jpegs')
    before = _hashes(jpegs)
    line = _error_line(_segment(config, checkpoint, jpegs, '--out', jpegs))
    assert 'did not write' in line and str(jpegs) in line
    assert _hashes(jpegs) == before
    # look.jpg and look_overlay.jpg: both would write look_overlay.png.
    looks = tmp_path / 'looks'
    looks.mkdir()
    (looks / 'look.jpg').write_bytes(photos[0].read_bytes())
    (looks / 'look_overlay.jpg').write_bytes(photos[1].read_bytes())
    out = tmp_path / 'looks_out'
    line = _error_line(_segment(config, checkpoint, looks, '--out', out))
    assert str(looks / 'look.jpg') in line
    assert str(looks / 'look_overlay.jpg') in line
    assert str(out / 'look_overlay.png') in line
    assert not out.exists()
    # --out naming a file, and a folder of someone else's files.
    line = _error_line(_segment(config, checkpoint, photos[0], '--out',
                                photos[1]))
    assert f'--out {photos[1]} is a file' in line
    theirs = tmp_path / 'theirs'
    theirs.mkdir()
    (theirs / 'notes.txt').write_text('mine')
    line = _error_line(_segment(config, checkpoint, photos[0], '--out',
                                theirs))
    assert 'notes.txt' in line and (theirs / 'notes.txt').read_text() == \
        'mine'


def test_segment_into_its_input_folder_and_again(trained, tmp_path):
    """--out inside the photos' folder: the outputs, an earlier run's
    outputs given as input, and a temporary left by a killed write are
    never taken for photos; a rerun keeps what is done; a smaller run
    keeps the other photos' outputs, and one with other settings that
    would lose them is refused."""
    config, checkpoint, _, photos = trained
    folder = _copy(photos[:3], tmp_path / 'album')
    out = folder / 'labels'
    before = _hashes(folder)
    first = _segment(config, checkpoint, folder, '--out', out)
    assert first.returncode == 0, first.stderr[-3000:]
    written = _hashes(out)
    assert len(written) == 7  # 3 label maps, 3 overlays, segment.json
    assert all(p.stat().st_mode & 0o777 == file_mode() for p in written)
    # What a SIGKILL during a write leaves: a hidden temporary.
    (out / '.stray.tmp-abc123.png').write_bytes(b'')
    second = _segment(config, checkpoint, folder, '--out', out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert 'finished 3 of these 3 photos; nothing is left to segment' \
        in second.stdout
    assert 'left out: 6 output(s) of an earlier tools/segment.py run' \
        in second.stdout
    assert _hashes(out) == written  # the temporary is gone, nothing else
    assert {p: h for p, h in _hashes(folder).items()
            if out not in p.parents} == before
    # The earlier run's folder given as the photos: nothing to segment.
    line = _error_line(_segment(config, checkpoint, out, '--out',
                                tmp_path / 'again'))
    assert 'holds no images' in line and 'earlier tools/segment.py' in line
    # Other photo files of the same names would replace the outputs of
    # the album's: refused before the model loads.
    refused = _segment(config, checkpoint, *photos[:2], '--out', out)
    assert f'as {photos[0].stem}.png, which {photos[0]} would replace' in \
        _error_line(refused)
    assert 'Loads checkpoint' not in refused.stdout + refused.stderr
    # A smaller run into the same folder, with the same settings, keeps
    # the other photo's outputs (the finished ones of its own too).
    third = _segment(config, checkpoint, *[folder / p.name
                                           for p in photos[:2]],
                     '--out', out)
    assert third.returncode == 0, third.stderr[-3000:]
    assert 'keeps the outputs of 1 other photos' in third.stdout
    assert _hashes(out).keys() == written.keys()
    assert {p: h for p, h in _hashes(out).items() if p.name != MANIFEST} \
        == {p: h for p, h in written.items() if p.name != MANIFEST}
    assert len(json.loads((out / MANIFEST).read_text())['done']) == 3
    # With other settings, a run of fewer photos would lose the others'
    # outputs: refused before any work; of the same photos, it segments
    # them again.
    kept = _hashes(out)
    refused = _segment(config, checkpoint, *[folder / p.name
                                             for p in photos[:2]],
                       '--out', out, '--max-side', 64)
    assert 'holds the outputs of 1 other photos' in _error_line(refused)
    assert 'Loads checkpoint' not in refused.stdout + refused.stderr
    assert _hashes(out) == kept
    # A label map removed by hand to save space (or an overlay): the rest
    # of that photo's outputs still count, and are kept.
    overlay = out / f'{photos[2].stem}_overlay.png'
    overlay.unlink()
    again = _segment(config, checkpoint, *[folder / p.name
                                           for p in photos[:2]],
                     '--out', out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / f'{photos[2].stem}.png').is_file()
    assert 'holds the outputs of 1 other photos' in _error_line(_segment(
        config, checkpoint, *[folder / p.name for p in photos[:2]],
        '--out', out, '--max-side', 64))
    # Finder's .DS_Store is no file of the user's to protect.
    (out / '.DS_Store').write_bytes(b'finder')
    fourth = _segment(config, checkpoint, folder, '--out', out,
                      '--max-side', 64)
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert 'segmenting all 3 photos again' in fourth.stdout


def test_segment_stopped_mid_run_leaves_nothing_half_written(trained,
                                                             tmp_path):
    import signal
    import time
    config, checkpoint, _, photos = trained
    folder = tmp_path / 'many'
    folder.mkdir()
    for index in range(24):
        photo = photos[index % len(photos)]
        (folder / f'{index:02d}_{photo.name}').write_bytes(
            photo.read_bytes())
    out = tmp_path / 'out'
    process = subprocess.Popen(
        [sys.executable, 'tools/segment.py', config, checkpoint, str(folder),
         '--out', str(out), '--device', 'cpu', '--batch-size', '1'],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300

    def photos_done():
        # A photo counts as done once segment.json says so (after both its
        # files are written): stop the run after that, mid-folder.
        try:
            return json.loads((out / MANIFEST).read_text())['done']
        except (OSError, ValueError, KeyError):
            return {}

    while not photos_done():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-3000:]
    assert 'stopped by SIGTERM' in stderr and 'Traceback' not in stderr
    assert not [p for p in out.iterdir() if p.name.startswith('.')]
    manifest = json.loads((out / MANIFEST).read_text())
    done = manifest['done']
    assert 1 <= len(done) < 24 and not manifest['complete']
    # Every photo recorded as done has both its files.
    for name in done:
        assert (out / name).is_file()
        assert (out / name.replace('.png', '_overlay.png')).is_file()
    rerun = _segment(config, checkpoint, folder, '--out', out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f'finished {len(done)} of these 24 photos; segmenting the ' \
        f'other {24 - len(done)}' in rerun.stdout
    assert json.loads((out / MANIFEST).read_text())['complete']
    assert len(list(out.glob('*_overlay.png'))) == 24


def test_segment_bad_inputs_end_in_one_line(trained, tmp_path):
    config, checkpoint, _, photos = trained
    empty_jpeg = tmp_path / 'empty.jpg'
    empty_jpeg.write_bytes(b'')
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(Path(checkpoint).read_bytes()[:100000])
    empty_checkpoint = tmp_path / 'empty.pth'
    empty_checkpoint.write_bytes(b'')
    text_checkpoint = tmp_path / 'text.pth'
    text_checkpoint.write_text('weights go here\n')
    cases = [
        ((config, checkpoint, empty_jpeg), 'empty.jpg: an empty file'),
        ((config, cut, photos[0]), f'{cut}:'),
        ((config, empty_checkpoint, photos[0]), f'{empty_checkpoint}:'),
        ((config, text_checkpoint, photos[0]), f'{text_checkpoint}:'),
        ((config, checkpoint, photos[0], '--workers', '0'),
         'must be at least 1'),
        ((config, checkpoint, photos[0], '--batch-size', str(2**70)),
         'between 1 and 4096'),
    ]
    for args, message in cases:
        result = _segment(*args, '--out', tmp_path / 'out')
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert 'Traceback' not in result.stderr, result.stderr[-3000:]
        assert message in result.stderr.strip().splitlines()[-1], \
            result.stderr[-2000:]
    test = run_tool('test.py', config, checkpoint, '--batch-size', 2**70,
                    '--device', 'cpu')
    assert 'between 1 and 4096' in _error_line(test)


def test_links_in_a_photo_folder_are_followed_or_named(trained, tmp_path):
    config, checkpoint, _, photos = trained
    folder = _copy(photos[:1], tmp_path / 'album')
    linked = _copy(photos[1:2], tmp_path / 'elsewhere')
    (folder / 'trip').symlink_to(linked, target_is_directory=True)
    (folder / 'gone.jpg').symlink_to(tmp_path / 'deleted.jpg')
    (folder / 'loop').symlink_to(folder, target_is_directory=True)
    found, notes = collect_photos([folder])
    assert found == [folder / photos[0].name,
                     folder / 'trip' / photos[1].name]
    assert any(note.startswith('1 link(s) to nothing') and 'gone.jpg' in
               note for note in notes)
    assert any('link loop' in note for note in notes)
    result = _segment(config, checkpoint, folder, '--out', tmp_path / 'o')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'left out: 1 link(s) to nothing' in result.stdout


def test_images_in_formats_not_read_are_named_other_files_not(tmp_path):
    folder = tmp_path / 'album'
    folder.mkdir()
    for name in ('a.jpg', 'b.HEIC', 'c.gif', 'notes.txt', '.d.gif'):
        (folder / name).write_bytes(b'x')
    found, notes = collect_photos([folder])
    assert found == [folder / 'a.jpg']
    assert notes == ['2 image(s) in a format this tool does not read '
                     '(convert them to JPEG or PNG) (e.g. '
                     f'{folder / "b.HEIC"})']


def test_photos_are_decoded_a_bounded_number_ahead(trained):
    *_, photos = trained
    paths = [photos[i % len(photos)] for i in range(40)]
    started = []
    import fashionseg.inference.photos as photos_module
    original = photos_module.read_photo
    photos_module.read_photo = lambda path: started.append(path) or \
        original(path)
    try:
        stream = decoded_photos(paths, workers=2, ahead=3)
        next(stream)
        assert len(started) <= 4
        assert sum(1 for _ in stream) == 39
    finally:
        photos_module.read_photo = original


def test_a_large_photo_is_segmented_at_max_side(trained, tmp_path):
    config, checkpoint, _, photos = trained
    large = tmp_path / 'large.jpg'
    image = read_photo(photos[0])
    mmcv.imwrite(mmcv.imresize(image, (1800, 2700)), str(large))
    out = tmp_path / 'out'
    result = _segment(config, checkpoint, large, '--out', out,
                      '--max-side', 600)
    assert result.returncode == 0, result.stderr[-3000:]
    labels = Image.open(out / 'large.png')
    assert labels.size == (1800, 2700)
    overlay = Image.open(out / 'large_overlay.png')
    assert overlay.size == (3600, 2700)


def test_a_second_run_into_a_folder_being_written_stops_at_once(
        trained, tmp_path):
    """Two segment.py runs into one --out: the second would take the
    first's temporaries and outputs for an interrupted run's and remove
    them; it stops instead, touching nothing. An --out that cannot be
    made is one error too."""
    from fashionseg.inference.photos import OutputFolderError, segment_photos
    from fashionseg.utils.output_folder import locked_output_folder
    config, checkpoint, _, photos = trained
    segmenter = Segmenter.from_config(config, checkpoint)
    out = tmp_path / 'out'
    with locked_output_folder(out, 'tools/segment.py'):  # the first run
        writing = out / '.0100_overlay.tmp-0123456789ab.png'
        writing.write_bytes(b'half a PNG')
        with pytest.raises(OutputFolderError, match='being written by '
                           'another run of tools/segment.py'):
            segment_photos(segmenter, photos[:1], out, progress=False)
        assert writing.read_bytes() == b'half a PNG'
    (tmp_path / 'notes.txt').write_text('mine')
    with pytest.raises(OutputFolderError, match='notes.txt is a file, not '
                       'a folder'):
        segment_photos(segmenter, photos[:1], tmp_path / 'notes.txt' / 'sub',
                       progress=False)
    # Once the first run has ended, a run goes ahead.
    writing.unlink()
    assert segment_photos(segmenter, photos[:1], out,
                          progress=False)['segmented'] == 1


def test_a_manifest_names_only_files_in_its_folder_and_their_photos(
        tmp_path):
    """segment.json cannot point outside its folder (a hand-edited or
    copied one makes the folder not the tool's), and a photo counts as
    done only for the very photo file that was segmented."""
    from fashionseg.inference.photos import (OutputFolderError,
                                             claim_segment_folder,
                                             read_manifest)
    out = tmp_path / 'out'
    out.mkdir()
    victim = tmp_path / 'IMG_1.jpg'
    victim.write_bytes(b'a photo')
    for outputs in (['../IMG_1.jpg'], [str(victim)], 'a.png', [MANIFEST]):
        (out / MANIFEST).write_text(json.dumps(
            {'outputs': outputs, 'done': {}}))
        assert read_manifest(out) is None
        with pytest.raises(OutputFolderError, match='did not write'):
            claim_segment_folder(out, [], {})
    assert victim.read_bytes() == b'a photo'
    # Done for holiday/IMG_1.jpg is not done for work/IMG_1.jpg.
    holiday, work = tmp_path / 'holiday', tmp_path / 'work'
    for folder in (holiday, work):
        folder.mkdir()
        (folder / 'IMG_1.jpg').write_bytes(folder.name.encode())
    plans = plan_outputs([holiday / 'IMG_1.jpg'], out)
    for plan in plans:
        plan.labels.write_bytes(b'x')
        plan.overlay.write_bytes(b'x')
    from fashionseg.inference.photos import _photo_record
    (out / MANIFEST).write_text(json.dumps({
        'outputs': ['IMG_1.png', 'IMG_1_overlay.png'], 'settings': {},
        'done': {'IMG_1.png': _photo_record(holiday / 'IMG_1.jpg')}}))
    outputs = ['IMG_1.png', 'IMG_1_overlay.png']
    assert claim_segment_folder(out, plans, {}) == ({
        'IMG_1.png': _photo_record(holiday / 'IMG_1.jpg')}, outputs, {})
    # Another photo file of the same name would replace the outputs of
    # holiday/IMG_1.jpg.
    with pytest.raises(OutputFolderError, match='holiday/IMG_1.jpg as '
                       'IMG_1.png, which .*work/IMG_1.jpg would replace'):
        claim_segment_folder(out, plan_outputs([work / 'IMG_1.jpg'], out),
                             {})
    assert claim_segment_folder(out, plans, {'config': 'other'}) == (
        {}, outputs, {})


def test_fp32_rows_keep_the_process_cudnn_settings():
    """TF32 off for eager fp32 changes nothing else of cuDNN's: the rows
    of the throughput table run with the same autotuning policy."""
    from fashionseg.inference.segmenter import _tf32
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.allow_tf32
    try:
        cudnn.benchmark, cudnn.allow_tf32 = True, True
        with _tf32(torch.device('cuda'), False):
            assert cudnn.benchmark and not cudnn.allow_tf32
        assert cudnn.benchmark and cudnn.allow_tf32
    finally:
        cudnn.benchmark, cudnn.allow_tf32 = saved


def test_labels_of_a_resizing_test_pipeline_are_mmsegmentations(
        trained, tmp_path):
    """A test pipeline that resizes: the labels are upsampled to each
    photo's original size (outside the network's graph), as
    mmseg.apis.inference_model gives them."""
    from mmseg.apis import inference_model, init_model
    config, checkpoint, _, photos = trained
    resizing = tmp_path / 'resizing.py'
    resizing.write_text(
        f'_base_ = [{config!r}]\n'
        "test_pipeline = [dict(type='LoadImageFromFile'),\n"
        "    dict(type='Resize', scale=(200, 150), keep_ratio=True),\n"
        "    dict(type='LoadAnnotations'), dict(type='PackSegInputs')]\n"
        'test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n')
    images = _photos_of_varied_size(photos, tmp_path)
    model = init_model(str(resizing), checkpoint, device='cpu')
    expected = [inference_model(model, image).pred_sem_seg.data[0]
                for image in images]
    segmenter = Segmenter.from_config(str(resizing), checkpoint,
                                      settings=InferenceSettings(
                                          batch_size=3))
    for image, prediction, labels in zip(
            images, segmenter.segment(images, to_host=True), expected):
        assert tuple(prediction.labels.shape) == image.shape[:2]
        assert torch.equal(prediction.labels.long(), labels.long())


def test_folded_batch_norms_leave_the_scores(trained):
    """fold-bn folds every batch norm of the FPN (each follows a
    convolution) into it; the scores stay eager fp32's up to rounding,
    and the model given to the engine keeps its batch norms."""
    from torch.nn.modules.batchnorm import _BatchNorm
    config, checkpoint, _, photos = trained
    images = [mmcv.imread(str(p)) for p in photos[:2]]
    reference = Segmenter.from_config(config, checkpoint)
    folded = Segmenter(reference.model, reference.cfg,
                       InferenceSettings(fold_bn=True))
    norms = [m for m in reference.model.modules()
             if isinstance(m, _BatchNorm)]
    assert norms and not [m for m in folded.model.modules()
                          if isinstance(m, _BatchNorm)]
    assert all(isinstance(m, _BatchNorm) for m in norms)
    for one, other in zip(reference.segment(images, keep_scores=True),
                          folded.segment(images, keep_scores=True)):
        torch.testing.assert_close(other.decode_scores, one.decode_scores,
                                   rtol=1e-4, atol=1e-4)


def test_a_fold_that_would_change_the_output_is_refused():
    """A convolution whose output a batch norm and something else read
    cannot be folded: the check on the output says so."""
    from torch import nn

    from fashionseg.inference.batch_norm_folding import (BatchNormFoldError,
                                                         fold_batch_norms)

    class ReadTwice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    model = ReadTwice().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(1, 2)
        model.bn.running_var.uniform_(2, 3)
    example = torch.rand(1, 3, 8, 8)
    with pytest.raises(BatchNormFoldError, match='read elsewhere'):
        fold_batch_norms(model, example, lambda net, x: net(x))

    class ReadOnce(ReadTwice):
        def forward(self, x):
            return self.bn(self.conv(x))

    model = ReadOnce().eval()
    model.load_state_dict(ReadTwice().state_dict())
    with torch.no_grad():
        model.bn.running_mean.uniform_(1, 2)
    folded = fold_batch_norms(model, example, lambda net, x: net(x))
    assert isinstance(folded.bn, nn.Identity)
    assert isinstance(model.bn, nn.BatchNorm2d)


def test_a_copied_model_takes_new_weights_on_refresh(trained):
    """A channels-last, folded engine runs a copy of the model; after
    training changes the model (a validation loop between epochs),
    refresh brings the copy the new weights."""
    config, checkpoint, _, photos = trained
    images = [mmcv.imread(str(p)) for p in photos[:2]]
    reference = Segmenter.from_config(config, checkpoint)
    fast = Segmenter(reference.model, reference.cfg, InferenceSettings(
        channels_last=True, fold_bn=True))
    assert fast.model is not reference.model
    assert next(reference.model.parameters()).is_contiguous()
    with torch.no_grad():
        reference.model.decode_head.conv_seg.weight.neg_()
    changed = [p.labels for p in reference.segment(images)]
    assert label_agreement(changed, [
        p.labels for p in fast.segment(images)]) < AGREEMENT_BAR
    # Refreshed from a model in training mode (as between epochs): its
    # batch-norm statistics are not touched by the fold's check.
    reference.model.train()
    norm = reference.model.decode_head.scale_heads[0][0].bn
    statistics = norm.running_mean.clone()
    fast.refresh()
    assert torch.equal(norm.running_mean, statistics)
    assert reference.model.training
    reference.model.eval()
    assert label_agreement(changed, [
        p.labels for p in fast.segment(images)]) >= AGREEMENT_BAR


def test_validation_through_a_folded_channels_last_engine(trained,
                                                           tmp_path):
    """A validation loop with fold-bn and channels-last validates every
    epoch on the weights of that epoch, leaving the training's own model
    (its layout, its batch norms) as training left it."""
    config, _, data, photos = trained
    options = data_options(data, train_images=4)
    options.update({'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 1,
                    'val_cfg.fold_bn': True, 'val_cfg.channels_last': True,
                    'default_hooks.checkpoint.interval': 1})
    cfg = configure_training(config, work_dir=str(tmp_path / 'work'),
                             pretrained=False, cfg_options=options)
    runner = train(cfg, config)
    assert next(runner.model.parameters()).is_contiguous()
    # The last validation ran on the last epoch's weights.
    segmenter = runner.val_loop._segmenter
    saved = Segmenter.from_config(config, str(tmp_path / 'work' /
                                              'epoch_2.pth'))
    images = [mmcv.imread(str(p)) for p in photos[:2]]
    torch.testing.assert_close(
        [p.decode_scores for p in segmenter.segment(images,
                                                     keep_scores=True)],
        [p.decode_scores for p in saved.segment(images, keep_scores=True)],
        rtol=1e-3, atol=1e-3)


def test_a_checked_setting_is_kept_only_if_it_agrees(trained, monkeypatch):
    """The tools' default on a GPU: a fast setting labels a first batch
    beside eager fp32 and runs only if it agrees at the bar; otherwise
    eager fp32 (the model as given, in its own layout) runs."""
    import fashionseg.inference.segmenter as segmenter_module
    from fashionseg.inference.segmenter import checked_segmenter
    config, checkpoint, _, photos = trained
    fast = Segmenter.from_config(config, checkpoint,
                                 settings=InferenceSettings(
                                     'bf16', True, batch_size=2))
    prepared = [fast.prepare(mmcv.imread(str(p))) for p in photos[:2]]
    sample = ([p['inputs'] for p in prepared],
              [p['data_samples'].metainfo for p in prepared])
    chosen, check = checked_segmenter(fast, *sample)
    assert chosen is fast
    assert check['asked'] == check['used'] == 'bf16 channels-last batch 2'
    assert check['agreement'] >= AGREEMENT_BAR
    assert check['checked_images'] == 2
    monkeypatch.setattr(segmenter_module, 'AGREEMENT_BAR', 1.01)
    chosen, check = checked_segmenter(fast, *sample)
    assert chosen.settings == InferenceSettings(batch_size=2)
    assert check['used'] == 'fp32 batch 2'
    assert chosen.model is fast.source_model


@pytest.mark.parametrize('argv, device, expected, checked', [
    ([], 'cuda', 'bf16 channels-last batch 32', True),
    (['--batch-size', '8'], 'cuda', 'bf16 channels-last batch 8', True),
    (['--precision', 'fp32'], 'cuda', 'fp32 batch 4', False),
    (['--fold-bn'], 'cuda', 'fp32 fold-bn batch 4', False),
    ([], 'cpu', 'fp32 batch 4', False),
    (['--precision', 'bf16', '--batch-size', '2'], 'cpu', 'bf16 batch 2',
     False)])
def test_tools_choose_the_device_default_only_when_asked_nothing(
        argv, device, expected, checked):
    import argparse

    from fashionseg.inference.arguments import (add_inference_arguments,
                                                tool_settings)
    parser = argparse.ArgumentParser()
    add_inference_arguments(parser, batch_size=4)
    settings, check = tool_settings(parser.parse_args(argv), device)
    assert (settings.name(), check) == (expected, checked)


def test_segment_photos_checks_a_fast_setting_on_the_first_batch(
        trained, tmp_path):
    """segment.py's GPU default, on the CPU: the setting is checked on the
    first batch of photos, the check is said, and the run and its
    segment.json name the setting that ran."""
    from fashionseg.inference.photos import segment_photos
    config, checkpoint, _, photos = trained
    segmenter = Segmenter.from_config(config, checkpoint,
                                      settings=InferenceSettings(
                                          channels_last=True, batch_size=2))
    said = []
    result = segment_photos(segmenter, photos[:3], tmp_path / 'out',
                            progress=False, check_agreement=True,
                            say=said.append)
    check = [line for line in said if line.startswith('inference engine:')]
    assert len(check) == 1, said
    assert check[0].startswith('inference engine: fp32 channels-last batch 2'
                               ' labels ')
    assert check[0].endswith("of the first 2 photos' pixels as eager fp32 "
                             'does: kept')
    assert result['engine'] == 'fp32 channels-last batch 2'
    manifest = json.loads((tmp_path / 'out' / MANIFEST).read_text())
    assert manifest['settings']['engine']['channels_last'] is True


def test_passes_of_the_same_sizes_share_one_sizes_tensor(trained):
    """The images' own sizes reach the device once per set of sizes, not
    with every batch (one copy per batch on a GPU is the photos'), and
    the labels are those of a fresh engine."""
    from fashionseg.inference import segmenter as module
    config, checkpoint, _, photos = trained
    images = [mmcv.imread(str(p)) for p in photos[:2]] * 2
    engine = Segmenter.from_config(config, checkpoint,
                                   settings=InferenceSettings(batch_size=2))
    first = engine.segment(images[:2])
    kept = dict(engine._sizes_on_device)
    again = engine.segment(images[2:])
    assert len(kept) >= 1 and engine._sizes_on_device.keys() == kept.keys()
    assert all(engine._sizes_on_device[key] is tensor
               for key, tensor in kept.items())
    fresh = Segmenter.from_config(config, checkpoint)
    for one, other, reference in zip(first, again,
                                      fresh.segment(images[:2])):
        assert torch.equal(one.labels, reference.labels)
        assert torch.equal(other.labels, reference.labels)
    # At most SIZES_KEPT sets are kept.
    for height in range(module.SIZES_KEPT + 5):
        engine._sizes_tensor([(height, 1)])
    assert len(engine._sizes_on_device) == module.SIZES_KEPT


def test_an_earlier_output_that_is_this_runs_under_another_case(tmp_path):
    """Where the file system does not tell case apart (macOS, Windows),
    an earlier run's ``A.png`` is this run's ``a.png``: not another
    photo's output to keep, nor one to remove (here the two names are
    hard links to one file, as they are one file there)."""
    from fashionseg.inference.photos import _other_photos
    out = tmp_path / 'out'
    out.mkdir()
    for name in ('A.png', 'A_overlay.png', 'B.png', 'B_overlay.png'):
        (out / name).write_bytes(b'x')
    os.link(out / 'A.png', out / 'a.png')
    os.link(out / 'A_overlay.png', out / 'a_overlay.png')
    photo = tmp_path / 'a.jpg'
    photo.write_bytes(b'photo')
    manifest = {'done': {'A.png': {}, 'B.png': {}}}
    assert set(_other_photos(out, manifest, plan_outputs([photo], out))) \
        == {'B.png'}


def test_compiled_engines_keep_their_variants_past_torchs_default_limit():
    """Past torch's recompile limit (8 by default, for the whole process)
    a compiled engine would run each new padded shape eagerly, unsaid;
    an engine raises it, never lowers it. (torch's own patch restores the
    process's settings: pytest's monkeypatch leaves the setting hidden.)"""
    from fashionseg.inference.segmenter import allow_compiled_variants
    config = torch._dynamo.config
    before = config.recompile_limit
    with config.patch(recompile_limit=8,
                      accumulated_recompile_limit=256):
        allow_compiled_variants(64)
        assert config.recompile_limit == 64
    with config.patch(recompile_limit=100):
        allow_compiled_variants(64)
        assert config.recompile_limit == 100
    assert config.recompile_limit == before

"""The fast inference engine (fashionseg.inference.segmenter) and
tools/segment.py, on a small model trained on the bundled CCP photos."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import mmcv
import numpy as np
import pytest
import torch
from PIL import Image
from raw_formats import BUNDLED_CCP
from training_helpers import CONFIG_DIR, REPO, SMALL_MODEL, data_options

from custom_datasets.convert import convert_release
from fashionseg.checkpoints.loading import CheckpointMismatchError
from fashionseg.inference.photos import (PhotoInputError, collect_photos,
                                         read_photo)
from fashionseg.inference.segmenter import Segmenter, label_agreement
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


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('engine')
    data = root / 'ccp'
    convert_release('ccp', BUNDLED_CCP, data)
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


@pytest.mark.parametrize('setting', [
    'fp32,channels-last,batch=2', 'bf16,batch=2', 'fp16,batch=2',
    'tf32,batch=2', 'fp32,compile=default,batch=2'])
def test_fast_settings_agree_with_eager_fp32(trained, setting):
    config, checkpoint, _, photos = trained
    images = [mmcv.imread(str(p)) for p in photos]
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


def test_settings_parse_and_refuse():
    assert InferenceSettings.parse(
        'bf16,channels-last,compile=max-autotune,batch=32') == \
        InferenceSettings('bf16', True, 'max-autotune', 32)
    for bad in ('fp8', 'fp32,batch=0', 'fp32,compile=fast', 'fp32,cl'):
        with pytest.raises(ValueError):
            InferenceSettings.parse(bad)


def test_decode_scores_are_the_score_files(trained, tmp_path):
    """keep_scores gives what tools/test.py --out saves for the CRF."""
    from fashionseg.evaluation.score_files import load_scores
    from fashionseg.runner.testing import configure_testing, run_test
    config, checkpoint, data, photos = trained
    out = tmp_path / 'scores'
    cfg = configure_testing(config, checkpoint, str(tmp_path / 'work'),
                            str(out), data_options(data),
                            settings=InferenceSettings(batch_size=2))
    run_test(cfg, config, checkpoint)
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
    return subprocess.run([sys.executable, 'tools/segment.py', *map(
        str, args), '--device', 'cpu'], cwd=REPO, capture_output=True,
        text=True, timeout=600)


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
                               + [f'{s}_overlay.png' for s in stems])
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
    # Two photos that would write the same file.
    twin = tmp_path / 'twin'
    twin.mkdir()
    (twin / photos[0].name).write_bytes(photos[0].read_bytes())
    with pytest.raises(PhotoInputError, match='would both be written'):
        collect_photos([photos[0], twin])

"""The batched PyTorch dense CRF against pydensecrf."""
import json

import cv2
import numpy as np
import pytest
import torch
from raw_formats import ccp_photos
from test_crf import small_dataset  # noqa: F401  (fixture)
from tool_process import run_tool

from fashionseg.crf.energy import CRFParams, upsampled_log_probs
from fashionseg.crf.pydensecrf_backend import dense_crf
from fashionseg.crf.search import sample_params
from fashionseg.crf.torch_backend import dense_crf_batch, dense_crf_torch

NUM_CLASSES = 23


@pytest.fixture(scope='module')
def photos():
    """Real CCP photos at three sizes, with scores that look like a
    network's: the truth (grouped into 23 classes) at a quarter of the size,
    plus noise, bilinearly upsampled."""
    rng = np.random.default_rng(0)
    out = []
    sizes = [(160, 104), (200, 136), (120, 80)]
    for (height, width), (_, jpeg, label) in zip(sizes, ccp_photos(3)):
        image = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8),
                                          cv2.IMREAD_COLOR),
                             cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (width, height),
                           interpolation=cv2.INTER_AREA)
        label = cv2.resize((label % NUM_CLASSES).astype(np.uint8),
                           (width, height), interpolation=cv2.INTER_NEAREST)
        small = cv2.resize(label, (-(-width // 4), -(-height // 4)),
                           interpolation=cv2.INTER_NEAREST)
        scores = 3.0 * np.eye(NUM_CLASSES)[small].transpose(2, 0, 1) + \
            rng.normal(0, 1.5, (NUM_CLASSES,) + small.shape)
        small_h, small_w = small.shape
        log_probs = upsampled_log_probs(scores, height, width, small_h * 4,
                                        small_w * 4)
        out.append((image, label, log_probs))
    return out


def test_labels_agree_with_pydensecrf(photos):
    """The agreement bar (>= 99 % of pixels, accuracy within 0.1 points)
    on real photos and parameter sets from the paper's ranges, on CPU."""
    for params in sample_params(4, seed=3) + [CRFParams(1, 1, 15)]:
        same = total = 0
        right_reference = right_torch = 0
        for image, label, log_probs in photos:
            reference = dense_crf(image, log_probs, params)
            labels = dense_crf_torch(image, log_probs, params)
            same += (reference == labels).sum()
            total += labels.size
            right_reference += (reference == label).sum()
            right_torch += (labels == label).sum()
        assert same / total >= 0.99, params
        assert 100 * abs(right_reference - right_torch) / total < 0.1
        # The CRF does change the labelling (the check is not vacuous).
        assert any((lp.argmax(0) != dense_crf(image, lp, params)).any()
                   for image, _, lp in photos)


def test_a_batch_of_different_sizes_equals_one_image_at_a_time(photos):
    params = [CRFParams(30, 20, 8), CRFParams(5, 60, 3), CRFParams(12, 7, 14)]
    images = [p[0] for p in photos]
    log_probs = [p[2] for p in photos]
    assert len({image.shape for image in images}) == 3
    batch = dense_crf_batch(images, log_probs, params)
    for image, probs, p, labels in zip(images, log_probs, params, batch):
        alone = dense_crf_torch(image, probs, p)
        assert labels.shape == image.shape[:2]
        np.testing.assert_array_equal(labels, alone)


def test_batch_input_is_checked(photos):
    image, _, log_probs = photos[0]
    with pytest.raises(ValueError, match='differ in length'):
        dense_crf_batch([image], [log_probs, log_probs],
                        [CRFParams(3, 3, 3)])
    with pytest.raises(ValueError, match='classes'):
        dense_crf_batch([image, image], [log_probs, log_probs[:5]],
                        [CRFParams(3, 3, 3)] * 2)
    with pytest.raises(ValueError, match='scores are'):
        dense_crf_batch([image[:-1]], [log_probs], [CRFParams(3, 3, 3)])


def test_cli_backends_give_the_same_result(small_dataset,  # noqa: F811
                                           tmp_path):
    """tools/crf.py search and apply with --backend torch against the
    default pydensecrf backend."""
    results = {}
    for backend in ('pydensecrf', 'torch'):
        out = tmp_path / backend
        result = run_tool(
            'crf.py', 'search', '--scores', small_dataset / 'noisy_val',
            '--data', small_dataset / 'data', '--trials', 3, '--backend',
            backend, '--device', 'cpu', '--batch-size', 3, '--out',
            out / 'search.json', timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        result = run_tool(
            'crf.py', 'apply', '--scores', small_dataset / 'noisy_test',
            '--data', small_dataset / 'data', '--params',
            out / 'search.json', '--backend', backend, '--out',
            out / 'refined', timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        results[backend] = (json.loads((out / 'search.json').read_text()),
                            json.loads((out / 'refined' /
                                        'metrics.json').read_text()))
    (search_py, apply_py), (search_torch, apply_torch) = \
        results['pydensecrf'], results['torch']
    assert search_torch['crf_backend']['backend'] == 'torch'
    assert search_torch['best'] == search_py['best']
    for mine, theirs in zip(search_torch['trials'], search_py['trials']):
        assert mine['accuracy'] == pytest.approx(theirs['accuracy'], abs=0.1)
    assert apply_torch['aAcc'] == pytest.approx(apply_py['aAcc'], abs=0.1)
    for path in (tmp_path / 'pydensecrf' / 'refined').glob('*.png'):
        reference = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        labels = cv2.imread(str(tmp_path / 'torch' / 'refined' / path.name),
                            cv2.IMREAD_UNCHANGED)
        assert (reference == labels).mean() >= 0.99


def test_each_image_takes_only_its_own_key_range():
    """Images whose features lie far apart fit one lattice: codes are laid
    out per image, so the batch needs the sum of the images' ranges, not
    the product of their joint range on every axis (which would exceed 64
    bits here, where each image's own range is small)."""
    from fashionseg.crf.lattice import PermutohedralLattice
    generator = torch.Generator().manual_seed(0)
    parts = [torch.rand(40, 5, generator=generator) * 50 + offset
             for offset in (0.0, 1e5, 3e5)]
    features = torch.cat(parts)
    segment = torch.arange(3).repeat_interleave(40)
    values = torch.rand(120, 2, generator=generator)
    together = PermutohedralLattice(features, segment).compute(values)
    with pytest.raises(OverflowError):  # the joint range, as one image
        PermutohedralLattice(features, torch.zeros(120, dtype=torch.long))
    for index, part in enumerate(parts):
        rows = slice(40 * index, 40 * (index + 1))
        alone = PermutohedralLattice(
            part, torch.zeros(40, dtype=torch.long)).compute(values[rows])
        torch.testing.assert_close(together[rows], alone)


def test_batched_runner_equals_image_by_image(small_dataset):  # noqa: F811
    """The torch backend's split runner (device inputs, read-ahead
    threads, pixel budget, device confusion matrices) gives, for every
    task, the labels and confusion matrix of refining that image alone
    from its score file."""
    from fashionseg.crf.backend import CRFBackend
    from fashionseg.crf.items import load_item, split_items
    from fashionseg.crf.refine import run_tasks
    from fashionseg.evaluation.confusion import confusion_matrix
    items, classes = split_items(small_dataset / 'noisy_val',
                                 small_dataset / 'data', 'val')
    params = [CRFParams(1, 1, 15), CRFParams(40, 13, 10), None]
    tasks = [(item, p, len(classes), True) for p in params for item in items]
    pixels = [load_item(item, len(classes))[1].size for item in items]
    for budget in (max(pixels), 10 * sum(pixels)):
        backend = CRFBackend('torch', device='cpu', batch_size=8,
                             max_pixels=budget)
        results = list(run_tasks(tasks, backend=backend))
        for (item, p, _, _), ((stem, confusion), labels) in zip(tasks,
                                                                results):
            image, label, log_probs = load_item(item, len(classes))
            alone = log_probs.argmax(0) if p is None else \
                dense_crf_torch(image, log_probs, p)
            assert stem == item.stem
            np.testing.assert_array_equal(labels, alone)
            np.testing.assert_array_equal(
                confusion, confusion_matrix(label, alone, len(classes)))


def test_batch_out_of_memory_says_what_to_do(small_dataset,  # noqa: F811
                                             monkeypatch):
    from fashionseg.crf import device_batches
    from fashionseg.crf.backend import CRFBackend
    from fashionseg.crf.items import CRFInputError, split_items
    from fashionseg.crf.refine import run_tasks
    items, classes = split_items(small_dataset / 'noisy_val',
                                 small_dataset / 'data', 'val')

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate '
                                     '2.00 GiB')

    monkeypatch.setattr(device_batches, 'dense_crf_batch', no_memory)
    backend = CRFBackend('torch', device='cpu', batch_size=4)
    with pytest.raises(CRFInputError, match=r'does not fit in cpu memory.*'
                       r'lower --batch-size \(now 4\)'):
        list(run_tasks([(item, CRFParams(3, 3, 3), len(classes), False)
                        for item in items], backend=backend))


def test_images_in_memory_are_refined_in_calls_within_the_budget(
        photos, monkeypatch):
    """``CRFBackend.refine_images`` (the photo tool's and the engine
    benchmark's CRF) keeps each torch-backend call within ``batch_size``
    images and ``max_pixels`` pixels, with the labels of one call for
    all."""
    from fashionseg.crf import backend as backend_module
    from fashionseg.crf.backend import CRFBackend
    images = [p[0] for p in photos] * 2
    log_probs = [torch.from_numpy(p[2]) for p in photos] * 2
    pixels = [lp.shape[-2] * lp.shape[-1] for lp in log_probs]
    params = CRFParams(40, 13, 10)
    together = CRFBackend('torch', batch_size=len(images),
                          max_pixels=sum(pixels)).refine_images(
                              images, log_probs, params)
    calls = []

    def counted(images_rgb, *args, **kwargs):
        calls.append(len(images_rgb))
        return dense_crf_batch(images_rgb, *args, **kwargs)

    monkeypatch.setattr(backend_module, 'dense_crf_batch', counted)
    for batch_size, budget, expected in (
            (2, sum(pixels), [2, 2, 2]),
            (len(images), pixels[0] + pixels[1] - 1, [1, 2, 1, 2]),
            (4, 1, [1] * 6)):
        calls.clear()
        labels = CRFBackend('torch', batch_size=batch_size,
                            max_pixels=budget).refine_images(
                                images, log_probs, params)
        assert calls == expected, (batch_size, budget)
        for alone, batched in zip(together, labels):
            np.testing.assert_array_equal(batched, alone)


def test_both_kernels_in_one_pass_equal_each_on_its_own():
    """Mean field's messages from the stacked kernels (one splat, the
    blurs block by block, one slice added to the unary) equal the sum of
    each kernel applied on its own, lattices of different dimensions
    and sizes alike."""
    from fashionseg.crf.lattice import blur
    from fashionseg.crf.torch_backend import _Kernel, _Messages
    generator = torch.Generator().manual_seed(0)
    points = 500
    segment = torch.zeros(points, dtype=torch.long)
    kernels = [_Kernel(torch.rand(points, d, generator=generator) * scale,
                       segment, torch.full((points, 1), weight))
               for d, scale, weight in ((2, 9.0, 3.0), (5, 4.0, 7.0))]
    log_q0 = torch.randn(points, 6, generator=generator)
    q = torch.softmax(torch.randn(points, 6, generator=generator), 1)
    expected = log_q0.clone()
    for kernel in kernels:
        assert len(kernel.blur_steps) in (3, 6)
        expected += kernel.slice @ blur(kernel.splat @ q, kernel.blur_steps)
    messages = _Messages(kernels)
    # Valid CSR matrices (built without PyTorch's checks): sorted columns
    # in range, non-decreasing row pointers.
    for matrix in [messages.splat, messages.slice, *messages.blur_steps]:
        torch.sparse_csr_tensor(matrix.crow_indices(), matrix.col_indices(),
                                matrix.values(), matrix.shape,
                                check_invariants=True)
    torch.testing.assert_close(
        messages.compute(log_q0, q, out=torch.empty_like(log_q0)), expected)


def test_a_lattice_too_wide_for_64_bit_codes_is_refused():
    """Codes whose range exceeds 64 bits raise OverflowError with what to
    do, rather than wrapping around into codes that collide."""
    from fashionseg.crf.lattice import PermutohedralLattice
    generator = torch.Generator().manual_seed(0)
    for features in (torch.rand(50, 7, generator=generator) * 500,
                     torch.randn(600, 5, generator=generator) * 500):
        with pytest.raises(OverflowError, match='fewer images per batch'):
            PermutohedralLattice(features,
                                 torch.zeros(len(features), dtype=torch.long))


def test_images_without_pixels_get_empty_label_maps():
    empty = np.zeros((0, 5, 3), np.uint8), np.zeros((3, 0, 5), np.float32)
    image = np.zeros((4, 5, 3), np.uint8), np.zeros((3, 4, 5), np.float32)
    for batch in ([empty], [empty, image]):
        labels = dense_crf_batch([b[0] for b in batch], [b[1] for b in batch],
                                 [CRFParams(3, 3, 3)] * len(batch))
        assert [label.shape for label in labels] == [
            b[0].shape[:2] for b in batch]

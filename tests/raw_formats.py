"""Writers of small files in the real raw formats of the releases, built from
real CCP photos and labels, for the dataset tests."""
import io
from pathlib import Path

import cv2
import h5py
import numpy as np
import scipy.io
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BUNDLED_CCP = REPO / 'tests' / 'data' / 'ccp_subset'
SHARED_CCP = REPO.parent / 'shared' / 'datasets' / 'ccp'

FASHIONISTA_NAMES = (
    'null', 'skin', 'hair', 'bag', 'belt', 'boots', 'coat', 'dress',
    'glasses', 'gloves', 'hat/headband', 'jacket/blazer', 'necklace',
    'pants/jeans', 'scarf/tie', 'shirt/blouse', 'shoes', 'shorts', 'skirt',
    'socks', 'sweater/cardigan', 'tights/leggings', 'top/t-shirt', 'vest',
    'watch/bracelet')
CFPD_NAMES = (
    'bk', 'T-shirt', 'bag', 'belt', 'blazer', 'blouse', 'coat', 'dress',
    'face', 'hair', 'hat', 'jeans', 'legging', 'pants', 'scarf', 'shoe',
    'shorts', 'skin', 'skirt', 'socks', 'stocking', 'sunglass', 'sweater')
MATLAB_73_HEADER = (b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: '
                    b'Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 .')


def ccp_photos(count: int, root: Path = BUNDLED_CCP):
    """(id, JPEG bytes, label map) of the first ``count`` CCP photos."""
    annotations = sorted((root / 'annotations' / 'pixel-level').glob('*.mat'))
    for path in annotations[:count]:
        label = scipy.io.loadmat(str(path))['groundtruth']
        yield int(path.stem), (root / 'photos' / f'{path.stem}.jpg'
                               ).read_bytes(), label


def png_bytes(label: np.ndarray, palette: bool = False) -> bytes:
    image = Image.fromarray(label.astype(np.uint8), mode='L')
    if palette:
        image = image.convert('P')
        image.putpalette([v for i in range(256) for v in (i, 255 - i, i)])
    buffer = io.BytesIO()
    image.save(buffer, format='PNG')
    return buffer.getvalue()


def fashionista_samples(count: int = 12):
    """(JPEG bytes, 25-class label map) built from CCP photos and labels."""
    return [(jpeg, (label % 25).astype(np.uint8))
            for _, jpeg, label in ccp_photos(count)]


def write_fashionista_v7(path: Path, samples, test_index,
                         labels=FASHIONISTA_NAMES, annotations=None,
                         drop=()):
    """``fashionista-v1.0.mat`` as MATLAB v7 (``scipy.io.savemat``).

    ``annotations`` overrides the annotation bytes; ``drop`` names variables
    or ``truths`` fields to leave out.
    """
    fields = [f for f in ('image', 'annotation', 'pose', 'index')
              if f not in drop]
    truths = np.empty((1, len(samples)), dtype=[(f, object) for f in fields])
    for i, (jpeg, label) in enumerate(samples):
        record = {
            'image': np.frombuffer(jpeg, np.uint8).reshape(1, -1),
            'annotation': np.frombuffer(
                annotations[i] if annotations else png_bytes(
                    label, palette=i % 2 == 1), np.uint8).reshape(1, -1),
            'pose': np.zeros((14, 2)),
            'index': np.array([[i + 1]], dtype=float),
        }
        truths[0, i] = tuple(record[f] for f in fields)
    variables = {
        'truths': truths,
        'test_index': np.asarray(test_index, dtype=float).reshape(1, -1),
        'labels': np.array([list(labels)], dtype=object),
    }
    for name in drop:
        variables.pop(name, None)
    scipy.io.savemat(str(path), variables)
    return path


def _h5_matlab_file(path: Path) -> h5py.File:
    f = h5py.File(path, 'w', userblock_size=512)
    f.close()
    with open(path, 'r+b') as raw:
        raw.write(MATLAB_73_HEADER.ljust(116, b' '))
    return h5py.File(path, 'a')


def _h5_char(group, name, text):
    data = np.array([[ord(c)] for c in text], dtype=np.uint16)
    dset = group.create_dataset(name, data=data)
    dset.attrs['MATLAB_class'] = np.bytes_('char')
    return dset


def write_fashionista_v73(path: Path, samples, test_index,
                          labels=FASHIONISTA_NAMES, null_ref_at=None):
    """The same variables in a MATLAB v7.3 (HDF5) file; ``null_ref_at``
    stores an empty reference for that record's image."""
    with _h5_matlab_file(path) as f:
        refs = f.create_group('#refs#')
        truths = f.create_group('truths')
        truths.attrs['MATLAB_class'] = np.bytes_('struct')
        for field in ('image', 'annotation'):
            field_refs = np.empty((len(samples), 1), dtype=h5py.ref_dtype)
            for i, (jpeg, label) in enumerate(samples):
                data = jpeg if field == 'image' else png_bytes(label)
                dset = refs.create_dataset(
                    f'{field}_{i}',
                    data=np.frombuffer(data, np.uint8).reshape(-1, 1))
                field_refs[i, 0] = dset.ref
            if null_ref_at is not None and field == 'image':
                field_refs[null_ref_at, 0] = h5py.Reference()
            truths.create_dataset(field, data=field_refs)
        f.create_dataset('test_index', data=np.asarray(
            test_index, dtype=float).reshape(-1, 1))
        label_refs = np.empty((len(labels), 1), dtype=h5py.ref_dtype)
        for i, name in enumerate(labels):
            label_refs[i, 0] = _h5_char(refs, f'label_{i}', name).ref
        f.create_dataset('labels', data=label_refs)
    return path


def superpixels(label: np.ndarray, block: int = 25):
    """A grid of square superpixels over ``label``, each given the majority
    class of its pixels: (0-based ids, 1-based category of each id)."""
    h, w = label.shape
    rows, cols = -(-h // block), -(-w // block)
    ids = (np.arange(h)[:, None] // block) * cols + np.arange(w)[None] // block
    num_classes = int(label.max()) + 1
    counts = np.bincount(ids.ravel() * num_classes + label.ravel(),
                         minlength=rows * cols * num_classes)
    category = counts.reshape(rows * cols, num_classes).argmax(1) + 1
    return ids, category.astype(np.int64)


def write_cfpd(root: Path, count: int = 10, names=CFPD_NAMES,
               drop_field=None, omit_photo=None, bad_superpixel_at=None):
    """``fashon_parsing_data.mat`` (MATLAB v7.3) and ``image/`` built from CCP
    photos resized to 600 x 400. Returns the expected label maps by stem."""
    root.mkdir(parents=True, exist_ok=True)
    (root / 'image').mkdir()
    expected = {}
    with _h5_matlab_file(root / 'fashon_parsing_data.mat') as f:
        refs = f.create_group('#refs#')
        cells = np.empty((count, 1), dtype=h5py.ref_dtype)
        for i, (image_id, jpeg, label) in enumerate(ccp_photos(count)):
            name = f'{image_id}.jpg'
            photo = cv2.imdecode(np.frombuffer(jpeg, np.uint8),
                                 cv2.IMREAD_COLOR)
            photo = cv2.resize(photo, (400, 600), interpolation=cv2.INTER_AREA)
            small = cv2.resize(label % 23, (400, 600),
                               interpolation=cv2.INTER_NEAREST)
            if omit_photo != i:
                ok, encoded = cv2.imencode('.jpg', photo)
                (root / 'image' / name).write_bytes(encoded.tobytes())
            ids, category = superpixels(small)
            if bad_superpixel_at == i:
                ids[0, 0] = len(category) + 3
            expected[str(image_id)] = (category[ids.clip(
                max=len(category) - 1)] - 1).astype(np.uint8)
            record = refs.create_group(f'record_{i}')
            record.attrs['MATLAB_class'] = np.bytes_('struct')
            _h5_char(record, 'img_name', name)
            # MATLAB stores arrays transposed: h5py shows 400 x 600.
            record.create_dataset('segmentation', data=ids.T.astype(float))
            record.create_dataset('category_label',
                                  data=category.reshape(-1, 1).astype(float))
            record.create_dataset('color_label', data=np.ones(
                (len(category), 1)))
            if drop_field:
                del record[drop_field]
            cells[i, 0] = record.ref
        f.create_dataset('fashion_dataset', data=cells)
        name_refs = np.empty((len(names), 1), dtype=h5py.ref_dtype)
        for i, name in enumerate(names):
            name_refs[i, 0] = _h5_char(refs, f'name_{i}', name).ref
        f.create_dataset('all_category_name', data=name_refs)
    return expected

"""Segmenting a user's own photos (``tools/segment.py``): files or folders
in, one label map (PNG in the dataset's palette) and one side-by-side
overlay (PNG) per photo out, through the fast inference engine
(:class:`fashionseg.inference.segmenter.Segmenter`) and, when asked, the
dense CRF with searched parameters (paper sections 2 and 4.2) in memory,
on the engine's device.

Photos are decoded by a pool of threads while the device works, in the
order given.
"""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
from PIL import Image
from tqdm import tqdm

from fashionseg.crf.backend import CRFBackend
from fashionseg.crf.energy import CRFParams, image_log_probs
from fashionseg.errors import DataError
from fashionseg.inference.segmenter import Prediction, Segmenter
from fashionseg.utils.atomic_write import atomic_write

IMAGE_SUFFIXES = ('.bmp', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')
OVERLAY_ALPHA = 0.5


class PhotoInputError(DataError):
    """A path that is not there, a folder without photos, an unreadable
    photo, or two photos that would write the same output."""


def collect_photos(inputs: Sequence) -> List[Path]:
    """The photos named by ``inputs``: files as given, folders' image
    files (by suffix, recursively, sorted)."""
    photos = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            found = sorted(p for p in entry.rglob('*')
                           if p.is_file()
                           and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise PhotoInputError(
                    f'{entry}: the folder holds no images '
                    f'({", ".join(IMAGE_SUFFIXES)})')
            photos.extend(found)
        elif entry.is_file():
            photos.append(entry)
        else:
            raise PhotoInputError(f'{entry}: no such file or folder')
    seen = {}
    for photo in photos:
        if photo.stem in seen and seen[photo.stem] != photo:
            raise PhotoInputError(
                f'{seen[photo.stem]} and {photo} would both be written as '
                f'{photo.stem}.png; rename one or segment them separately')
        seen[photo.stem] = photo
    return list(dict.fromkeys(photos))


def read_photo(path: Path) -> np.ndarray:
    """A photo decoded as MMSegmentation's ``LoadImageFromFile`` does
    (BGR, EXIF orientation applied)."""
    try:
        image = mmcv.imfrombytes(Path(path).read_bytes(), flag='color')
    except OSError as error:
        raise PhotoInputError(f'{path}: cannot be read ({error})')
    if image is None:
        raise PhotoInputError(f'{path}: not an image (cannot be decoded)')
    return image


def decoded_photos(paths: Sequence[Path], workers: int = 4
                   ) -> Iterator[Tuple[Path, np.ndarray]]:
    """(path, BGR image) in order, decoded ahead by ``workers`` threads
    (OpenCV releases the interpreter lock while it decodes)."""
    with ThreadPoolExecutor(workers) as pool:
        yield from zip(paths, pool.map(read_photo, paths))


def colour_labels(labels: np.ndarray, palette: Sequence) -> Image.Image:
    """A label map as a palette PNG image (the dataset's colours)."""
    image = Image.fromarray(labels.astype(np.uint8), mode='P')
    flat = [int(c) for colour in palette for c in colour][:768]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def overlay(image_bgr: np.ndarray, labels: np.ndarray,
            palette: Sequence) -> np.ndarray:
    """The photo beside the photo blended with its label colours (RGB)."""
    rgb = image_bgr[:, :, ::-1]
    colours = np.asarray(palette, dtype=np.uint8)[labels]
    blended = (rgb * (1 - OVERLAY_ALPHA) + colours * OVERLAY_ALPHA).astype(
        np.uint8)
    return np.concatenate([rgb, blended], axis=1)


def refine_predictions(predictions: Sequence[Prediction],
                       metas: Sequence[dict], images_rgb: Sequence,
                       params: CRFParams, backend: CRFBackend) -> list:
    """CRF-refined label maps (numpy) of the engine's predictions, kept
    with their scores, in memory (:meth:`fashionseg.crf.backend.CRFBackend.
    refine_images`)."""
    log_probs = [image_log_probs(p.decode_scores, m['img_shape'][:2],
                                 p.input_shape, m['ori_shape'][:2])
                 for p, m in zip(predictions, metas)]
    return backend.refine_images(images_rgb, log_probs, params)


def segment_photos(segmenter: Segmenter, photos: Sequence[Path],
                   out_dir: Path, crf_params: Optional[CRFParams] = None,
                   crf_backend: str = 'torch', workers: int = 4,
                   progress: bool = True) -> dict:
    """Label ``photos`` into ``out_dir`` (``STEM.png`` and
    ``STEM_overlay.png``); returns what was written. ``crf_backend`` names
    the CRF's backend (:meth:`fashionseg.crf.backend.CRFBackend.choose`),
    on the segmenter's device."""
    backend = CRFBackend.choose(crf_backend, segmenter.device.type)
    meta = segmenter.model.dataset_meta or {}
    palette = meta.get('palette') or _default_palette(segmenter.num_classes)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    batch_size = segmenter.settings.batch_size
    written = []
    bar = tqdm(total=len(photos), unit='photo', disable=not progress,
               desc='segmenting')
    batch = []
    for path, image in decoded_photos(photos, workers):
        batch.append((path, image))
        if len(batch) == batch_size:
            written += _segment_batch(segmenter, batch, out_dir, palette,
                                      crf_params, backend)
            bar.update(len(batch))
            batch = []
    if batch:
        written += _segment_batch(segmenter, batch, out_dir, palette,
                                  crf_params, backend)
        bar.update(len(batch))
    bar.close()
    return dict(photos=len(written), out_dir=str(out_dir),
                label_maps=[str(w[0]) for w in written],
                overlays=[str(w[1]) for w in written],
                crf=crf_params.as_dict() if crf_params else None)


def _segment_batch(segmenter, batch, out_dir, palette, crf_params,
                   backend: CRFBackend) -> list:
    prepared = [segmenter.prepare(image) for _, image in batch]
    metas = [p['data_samples'].metainfo for p in prepared]
    predictions = segmenter.predict([p['inputs'] for p in prepared], metas,
                                    keep_scores=crf_params is not None)
    labels = [p.labels.cpu().numpy() for p in predictions]
    if crf_params is not None:
        rgb = [np.ascontiguousarray(image[:, :, ::-1]) for _, image in batch]
        labels = refine_predictions(predictions, metas, rgb, crf_params,
                                    backend)
    written = []
    for (path, image), label in zip(batch, labels):
        label_path = out_dir / f'{path.stem}.png'
        overlay_path = out_dir / f'{path.stem}_overlay.png'
        with atomic_write(label_path, binary=True) as f:
            colour_labels(label, palette).save(f, format='PNG')
        with atomic_write(overlay_path, binary=True) as f:
            Image.fromarray(overlay(image, label, palette)).save(
                f, format='PNG')
        written.append((label_path, overlay_path))
    return written


def _default_palette(num_classes: int) -> list:
    """Distinct colours for a checkpoint that carries no palette."""
    rng = np.random.default_rng(0)
    return [[0, 0, 0]] + rng.integers(
        0, 256, (num_classes - 1, 3)).tolist()

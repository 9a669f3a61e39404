"""Segmenting a user's own photos (``tools/segment.py``): files or folders
in, one label map (PNG in the dataset's palette) and one side-by-side
overlay (PNG) per photo out, through the fast inference engine
(:class:`fashionseg.inference.segmenter.Segmenter`) and, when asked, the
dense CRF with searched parameters (paper sections 2 and 4.2) in memory,
on the engine's device.

Nothing of the user's is written over: the output folder must be new,
empty, or one this tool wrote before (its ``segment.json`` lists what it
wrote); no output may land on an input photo or on another output of the
same run; the tool's own outputs and temporaries are never taken for
photos. A rerun after an interruption finishes what is missing and says
so. Photos are decoded a bounded number ahead by a pool of threads, in
the order given; a photo larger than ``max_side`` is segmented at that
size and its labels enlarged to the photo's.
"""
import collections
import contextlib
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from fashionseg.config_checks import (check_checkpoint, check_config_path,
                                      load_config)
from fashionseg.crf.backend import CRFBackend
from fashionseg.crf.energy import CRFParams, image_log_probs
from fashionseg.errors import DataError, UsageError
from fashionseg.inference.segmenter import (Prediction, Segmenter,
                                            checked_segmenter, describe_check)
from fashionseg.inference.settings import InferenceSettings
from fashionseg.utils.atomic_write import (atomic_write, is_temporary,
                                           write_text_atomic)
from fashionseg.utils.output_folder import (OutputFolderError,
                                            locked_output_folder,
                                            refuse_foreign,
                                            refuse_under_a_file)

IMAGE_SUFFIXES = ('.bmp', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')
# Images a folder may hold that OpenCV does not read here: left out, and
# said (other files are not photos and are passed over in silence).
UNREAD_IMAGE_SUFFIXES = ('.arw', '.avif', '.cr2', '.dng', '.gif', '.heic',
                         '.heif', '.jp2', '.nef', '.raw')
OVERLAY_SUFFIX = '_overlay'
OVERLAY_PNG_LEVEL = 1
# What the tool writes into its output folder beside the outputs: the
# run's settings, its outputs and the photos done.
MANIFEST = 'segment.json'
EARLIER_OUTPUT = 'output(s) of an earlier tools/segment.py run'
# The longer side, in pixels, beyond which a photo is segmented at a
# smaller size (the paper's photos are 600 x 400).
DEFAULT_MAX_SIDE = 1024


class PhotoInputError(DataError):
    """A path that is not there, a folder without photos, an unreadable
    photo, or two photos that would write the same output."""


@dataclass(frozen=True)
class PhotoOutputs:
    """One photo and the two files it is written to."""
    photo: Path
    labels: Path
    overlay: Path


def read_manifest(folder: Path) -> Optional[dict]:
    """The ``segment.json`` in ``folder`` when it is one this tool wrote:
    a record whose ``outputs`` are plain file names (no folder, no
    ``..``) and whose ``done`` maps such names to photos; else None (a
    folder holding an unreadable or altered one is not the tool's)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    outputs, done = manifest.get('outputs'), manifest.get('done', {})
    if not isinstance(outputs, list) or not isinstance(done, dict) or not \
            all(_plain_name(name) for name in outputs + list(done)) or \
            not all(isinstance(r, dict) for r in done.values()) or \
            not isinstance(manifest.get('settings', {}), (dict, type(None))):
        return None
    return manifest


def _plain_name(name) -> bool:
    return isinstance(name, str) and name not in ('', '.', '..', MANIFEST) \
        and '/' not in name and '\\' not in name


def _outputs_of_earlier_run(folder: Path) -> set:
    """The resolved paths a ``segment.json`` in ``folder`` lists."""
    manifest = read_manifest(folder)
    return {(Path(folder) / name).resolve()
            for name in (manifest or {}).get('outputs', [])}


def collect_photos(inputs: Sequence) -> Tuple[List[Path], List[str]]:
    """The photos named by ``inputs`` (files as given; folders' image
    files by suffix, recursively, links followed, sorted) and one note per
    kind of file left out of a folder, with how many and an example:
    outputs of an earlier run (listed in the ``segment.json`` beside
    them), temporaries of an interrupted write, links to nothing and link
    loops."""
    photos: List[Path] = []
    left_out: Dict[str, List[Path]] = {}
    for entry in map(Path, inputs):
        if entry.is_dir():
            found = _walk_folder(entry, left_out)
            if not found:
                raise PhotoInputError(
                    f'{entry}: the folder holds no images '
                    f'({", ".join(IMAGE_SUFFIXES)})'
                    + ''.join(f'; left out: {note}'
                              for note in _notes(left_out)))
            photos.extend(found)
        elif entry.is_file():
            if entry.resolve() in _outputs_of_earlier_run(entry.parent):
                left_out.setdefault(EARLIER_OUTPUT, []).append(entry)
            else:
                photos.append(entry)
        elif entry.is_symlink():
            raise PhotoInputError(f'{entry}: a link to nothing')
        else:
            raise PhotoInputError(f'{entry}: no such file or folder')
    if not photos:
        raise PhotoInputError('no photos to segment; left out: '
                              + '; '.join(_notes(left_out)))
    # The same photo named twice (as a file and in its folder, or by two
    # paths) is segmented once.
    unique = {}
    for photo in photos:
        unique.setdefault(photo.resolve(), photo)
    return list(unique.values()), _notes(left_out)


def _notes(left_out: Dict[str, List[Path]]) -> List[str]:
    return [f'{len(paths)} {why} (e.g. {paths[0]})'
            for why, paths in left_out.items()]


def _walk_folder(folder: Path, left_out: Dict[str, List[Path]]
                 ) -> List[Path]:
    found, seen_dirs = [], set()
    earlier = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        root = Path(root)
        real = root.resolve()
        if real in seen_dirs:
            left_out.setdefault('link loop(s) or folder(s) reached twice, '
                                'not walked again',
                                []).append(root)
            dirs[:] = []
            continue
        seen_dirs.add(real)
        earlier |= _outputs_of_earlier_run(root)
        dirs.sort()
        for name in sorted(files):
            path = root / name
            if path.suffix.lower() in UNREAD_IMAGE_SUFFIXES and \
                    not name.startswith('.'):
                left_out.setdefault('image(s) in a format this tool does '
                                    'not read (convert them to JPEG or '
                                    'PNG)', []).append(path)
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if is_temporary(path):
                left_out.setdefault('temporary file(s) of an interrupted '
                                    'write', []).append(path)
            elif name.startswith('.'):
                # Hidden: e.g. macOS's ``._NAME.jpg`` resource forks.
                left_out.setdefault('hidden file(s)', []).append(path)
            elif not path.exists():
                left_out.setdefault('link(s) to nothing', []).append(path)
            elif path.resolve() in earlier:
                left_out.setdefault(EARLIER_OUTPUT, []).append(path)
            else:
                found.append(path)
    return found


def plan_outputs(photos: Sequence[Path], out_dir: Path
                 ) -> List[PhotoOutputs]:
    """Where each photo is written (``STEM.png``, ``STEM_overlay.png``),
    refusing an output that would land on an input photo or on another
    output, and an ``out_dir`` that is a file."""
    out_dir = Path(out_dir)
    refuse_under_a_file(out_dir)
    # Compared without case too: on a case-insensitive file system (macOS,
    # Windows) ``A.png`` and ``a.png`` are one file.
    inputs = {str(photo.resolve()).lower(): photo for photo in photos}
    plans, writers = [], {}
    longest = _longest_name(out_dir)
    for photo in photos:
        plan = PhotoOutputs(photo, out_dir / f'{photo.stem}.png',
                            out_dir / f'{photo.stem}{OVERLAY_SUFFIX}.png')
        length = len(os.fsencode(plan.overlay.name))
        if length > longest:
            raise PhotoInputError(
                f'{photo}: its overlay\'s name ({length} bytes) would be '
                f'longer than the file system allows in --out ({longest});'
                ' rename the photo')
        for output in (plan.labels, plan.overlay):
            target = str(output.resolve()).lower()
            if target in inputs:
                raise OutputFolderError(
                    f'writing {output} would replace the input photo '
                    f'{inputs[target]}; choose an --out folder that holds '
                    'none of the photos')
            if target in writers:
                other, same = writers[target]
                where = '' if same == str(output.resolve()) else (
                    ' where the case of letters is not told apart, as on '
                    'macOS and Windows')
                raise PhotoInputError(
                    f'{other} and {photo} would both be written as '
                    f'{output}{where}; rename one or segment them '
                    'separately')
            writers[target] = (photo, str(output.resolve()))
        plans.append(plan)
    return plans


def _longest_name(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or of
    its nearest existing parent) allows; 255 where it does not say."""
    for place in (folder, *folder.absolute().parents):
        if place.is_dir():
            try:
                return os.pathconf(place, 'PC_NAME_MAX')
            except (OSError, ValueError):
                break
    return 255


def run_settings(config: str, checkpoint: str, cfg) -> dict:
    """What makes two runs' labels the same, beside the engine and CRF
    settings: the config (its path, and its resolved text, so that an
    edited file counts as new) and the checkpoint (its path, size and
    modification time)."""
    stat = os.stat(checkpoint)
    return dict(config=os.path.abspath(config),
                config_sha256=hashlib.sha256(
                    cfg.pretty_text.encode()).hexdigest(),
                checkpoint=os.path.abspath(checkpoint),
                checkpoint_bytes=stat.st_size,
                checkpoint_mtime_ns=stat.st_mtime_ns)


def _photo_record(photo: Path) -> dict:
    """What identifies a photo's content for a rerun: its resolved path,
    size and modification time."""
    stat = photo.stat()
    return dict(photo=str(photo.resolve()), bytes=stat.st_size,
                mtime_ns=stat.st_mtime_ns)


# What macOS's Finder leaves in a folder it shows: neither an output nor
# a file of the user's to protect.
FINDER_FILES = ('.DS_Store',)


def _other_photos(out_dir: Path, manifest: dict,
                  plans: Sequence[PhotoOutputs]) -> Dict[str, dict]:
    """The photos (by label-map name) an earlier run's ``manifest``
    finished that still have an output in ``out_dir`` (the label map or
    the overlay: a user may have removed one to save space) and are not
    among this run's outputs (nor, where the file system does not tell
    case apart, the same files as one of them)."""
    wanted = {name for plan in plans
              for name in (plan.labels.name, plan.overlay.name)}
    others = {}
    for name, record in manifest.get('done', {}).items():
        present = [n for n in (name, overlay_name(name))
                   if (out_dir / n).is_file()]
        if present and not any(_one_of(out_dir, n, wanted)
                               for n in present):
            others[name] = record
    return others


def _one_of(out_dir: Path, name: str, names) -> bool:
    """Whether file ``name`` in ``out_dir`` is one of ``names`` there: the
    same name, or, where the file system does not tell case apart, the
    same file under another case."""
    return name in names or any(
        other.lower() == name.lower() and (out_dir / other).exists()
        and os.path.samefile(out_dir / name, out_dir / other)
        for other in names)


def _refuse_foreign_files(out_dir: Path, manifest: Optional[dict]) -> None:
    """Refuse ``out_dir`` when it holds anything its ``segment.json`` does
    not list (temporaries of an interrupted write and Finder's files
    aside)."""
    manifest = manifest or {}
    owned = set(manifest.get('outputs', [])) | {MANIFEST}
    foreign = [path for path in sorted(out_dir.iterdir())
               if not (is_temporary(path) and path.is_file())
               and path.name not in FINDER_FILES
               and (path.name not in owned or not manifest
                    or not path.is_file())]
    if foreign:
        refuse_foreign(out_dir, foreign, 'tools/segment.py')


def refuse_losing_other_photos(out_dir: Path, plans: Sequence[PhotoOutputs],
                               settings: dict,
                               ignore: Sequence[str] = ()) -> None:
    """Refuse a run that would lose outputs an earlier run in ``out_dir``
    wrote: those of another photo file of the same name (its record names
    another path), and, where this run's ``settings`` (leaving out the
    keys in ``ignore``) differ from that run's, those of the other photos
    it finished (replacing the folder's run would remove them). Checked
    before the model loads, on the settings known then, and again once
    the engine's setting is known."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir) if out_dir.is_dir() else None
    if not manifest:
        return
    done = manifest.get('done', {})
    for plan in plans:
        record = done.get(plan.labels.name)
        if record and record.get('photo') != str(plan.photo.resolve()) \
                and (plan.labels.is_file() or plan.overlay.is_file()):
            raise OutputFolderError(
                f'--out {out_dir} holds the outputs of {record.get("photo")}'
                f' as {plan.labels.name}, which {plan.photo} would replace;'
                ' rename one of the photos, or segment into another folder')
    earlier = {k: v for k, v in (manifest.get('settings') or {}).items()
               if k not in ignore}
    if earlier == {k: v for k, v in settings.items() if k not in ignore}:
        return
    others = _other_photos(out_dir, manifest, plans)
    if others:
        raise OutputFolderError(
            f'--out {out_dir} holds the outputs of {len(others)} other '
            f'photos (e.g. {sorted(others)[0]}) that an earlier run made '
            'with other settings (model, engine, CRF or --max-side); this '
            'run would replace the folder\'s run and lose them: segment '
            'into another folder, or remove them yourself')


def claim_segment_folder(out_dir: Path, plans: Sequence[PhotoOutputs],
                         settings: dict
                         ) -> Tuple[Dict[str, dict], list, Dict[str, dict]]:
    """Make sure ``out_dir`` is the tool's to write: new, empty, or
    holding only what an earlier run listed in its ``segment.json`` (and
    temporaries of an interrupted write, which are removed). Returns the
    photos (by label-map name) an earlier run with the same ``settings``
    finished from the same photo file, whose outputs are still whole; the
    outputs that run listed; and the other photos it finished, which this
    run does not segment and keeps. An earlier run with other settings
    is replaced only where it finished no other photos
    (:func:`refuse_losing_other_photos`)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return {}, [], {}
    manifest = read_manifest(out_dir) or {}
    _refuse_foreign_files(out_dir, manifest)
    refuse_losing_other_photos(out_dir, plans, settings)
    for path in out_dir.iterdir():
        if is_temporary(path) and path.is_file():
            path.unlink()
    earlier = list(manifest.get('outputs', []))
    if manifest.get('settings') != settings:
        return {}, earlier, {}
    done = manifest.get('done', {})
    finished = {plan.labels.name: done[plan.labels.name] for plan in plans
                if done.get(plan.labels.name) == _photo_record(plan.photo)
                and plan.labels.is_file() and plan.overlay.is_file()}
    return finished, earlier, _other_photos(out_dir, manifest, plans)


def overlay_name(label_name: str) -> str:
    """``STEM.png`` -> ``STEM_overlay.png``."""
    stem = label_name[:-len('.png')] if label_name.endswith('.png') \
        else label_name
    return f'{stem}{OVERLAY_SUFFIX}.png'


def _write_manifest(out_dir: Path, plans: Sequence[PhotoOutputs],
                    settings: dict, done: Dict[str, dict],
                    earlier: Sequence[str], complete: bool,
                    others: Dict[str, dict] = None) -> None:
    """``segment.json``: this run's photos and, kept beside them, the
    ``others`` an earlier run with the same settings finished."""
    others = others or {}
    outputs = sorted({name for plan in plans for name in (
        plan.labels.name, plan.overlay.name)} | set(earlier) | {
            name for label in others
            for name in (label, overlay_name(label))})
    write_text_atomic(out_dir / MANIFEST, json.dumps(dict(
        tool='tools/segment.py', settings=settings, outputs=outputs,
        done=dict(others, **done), complete=complete), indent=2,
        sort_keys=True) + '\n')


def read_photo(path: Path) -> np.ndarray:
    """A photo decoded as MMSegmentation's ``LoadImageFromFile`` does
    (BGR, EXIF orientation applied)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise PhotoInputError(f'{path}: cannot be read ({error})')
    if not data:
        raise PhotoInputError(f'{path}: an empty file, not an image')
    try:
        image = mmcv.imfrombytes(data, flag='color')
    except Exception as error:  # noqa: BLE001 (OpenCV's and Pillow's own)
        raise PhotoInputError(f'{path}: not an image ({error})') from None
    if image is None:
        raise PhotoInputError(f'{path}: not an image (cannot be decoded)')
    return image


def decoded_photos(paths: Sequence[Path], workers: int = 4,
                   ahead: Optional[int] = None
                   ) -> Iterator[Tuple[Path, np.ndarray]]:
    """(path, BGR image) in order, decoded by ``workers`` threads (OpenCV
    releases the interpreter lock while it decodes), at most ``ahead``
    (default: twice the workers) decoded or decoding beyond the one
    handed out, so that memory does not grow with the folder."""
    ahead = ahead or 2 * workers
    with ThreadPoolExecutor(workers) as pool:
        pending = []
        for path in paths:
            pending.append((path, pool.submit(read_photo, path)))
            if len(pending) > ahead:
                done_path, future = pending.pop(0)
                yield done_path, future.result()
        for path, future in pending:
            yield path, future.result()


def colour_labels(labels: np.ndarray, palette: Sequence) -> Image.Image:
    """A label map as a palette PNG image (the dataset's colours)."""
    image = Image.fromarray(labels.astype(np.uint8), mode='P')
    flat = [int(c) for colour in palette for c in colour][:768]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def overlay(image_bgr: np.ndarray, labels: np.ndarray,
            palette: Sequence) -> np.ndarray:
    """The photo beside the photo blended half and half with its label
    colours (RGB; integer arithmetic, so that a large photo needs no
    floating-point copy)."""
    rgb = image_bgr[:, :, ::-1]
    colours = np.asarray(palette, dtype=np.uint8)[labels]
    out = np.empty((rgb.shape[0], 2 * rgb.shape[1], 3), np.uint8)
    out[:, :rgb.shape[1]] = rgb
    out[:, rgb.shape[1]:] = (rgb.astype(np.uint16) + colours) // 2
    return out


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


def segment_settings(run: Optional[dict],
                     engine: Optional[InferenceSettings],
                     crf_params: Optional[CRFParams], crf_backend: str,
                     max_side: int) -> dict:
    """What makes two runs' labels the same, as ``segment.json`` records
    it: ``run`` (:func:`run_settings`), the engine's setting (None before
    it is known), the CRF and its backend, and ``--max-side``; as JSON
    reads it back, so that it compares with an earlier run's. The batch
    size is left out (labels do not depend on it), and so is the JPEG
    decoder (photos are decoded here, on the host)."""
    return json.loads(json.dumps(dict(
        run or {}, engine=None if engine is None else {
            k: v for k, v in engine.as_dict().items()
            if k not in ('batch_size', 'decode')},
        crf=crf_params.as_dict() if crf_params else None,
        crf_backend=crf_backend if crf_params else None,
        max_side=max_side)))


def check_before_loading(config: str, checkpoint: str,
                         photos: Sequence[Path], out_dir: Path,
                         crf_params: Optional[CRFParams], crf_backend: str,
                         device: str, max_side: int,
                         engine: Optional[InferenceSettings] = None) -> dict:
    """What ``tools/segment.py`` refuses before the model loads: a
    missing config or checkpoint, outputs that would land on a photo or on
    each other (:func:`plan_outputs`), and a run that would lose the
    outputs of other photos an earlier run made with other settings (the
    engine's setting is compared here where ``engine`` gives it, else once
    the model is loaded and its fast setting checked), and a folder that
    holds files the tool did not write. Returns the run's settings
    (:func:`run_settings`)."""
    out_dir = Path(out_dir)
    plans = plan_outputs(photos, out_dir)
    check_config_path(config)
    check_checkpoint(checkpoint)
    run = run_settings(config, checkpoint, load_config(config))
    backend = CRFBackend.choose(crf_backend, torch.device(device).type)
    if out_dir.is_dir():
        _refuse_foreign_files(out_dir, read_manifest(out_dir))
    refuse_losing_other_photos(out_dir, plans, segment_settings(
        run, engine, crf_params, backend.name, max_side),
        ignore=[] if engine is not None else ['engine'])
    return run


@contextlib.contextmanager
def _gone_if_nothing_written(out_dir: Path, new_folder: bool):
    """A folder this run made goes again when the run stops before any
    photo's outputs were written (a damaged first photo, Ctrl-C at the
    start): it would hold only a ``segment.json`` of nothing."""
    try:
        yield
    except BaseException:
        if new_folder and out_dir.is_dir() and {
                p.name for p in out_dir.iterdir()} <= {MANIFEST}:
            (out_dir / MANIFEST).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise


def check_segment_options(workers: int, max_side: int) -> None:
    """``--workers`` and ``--max-side``, checked before the model loads."""
    if workers < 1:
        raise UsageError(f'--workers must be at least 1, not {workers}')
    if max_side < 32:
        raise UsageError(f'--max-side must be at least 32, not {max_side}')


def segment_photos(segmenter: Segmenter, photos: Sequence[Path],
                   out_dir: Path, crf_params: Optional[CRFParams] = None,
                   crf_backend: str = 'auto', workers: int = 4,
                   progress: bool = True, settings: Optional[dict] = None,
                   max_side: int = DEFAULT_MAX_SIDE,
                   check_agreement: bool = False, say=print) -> dict:
    """Label ``photos`` into ``out_dir`` (``STEM.png`` and
    ``STEM_overlay.png``, and ``segment.json``); returns what was written.
    ``crf_backend`` names the CRF's backend (:meth:`fashionseg.crf.backend.
    CRFBackend.choose`), on the segmenter's device; ``settings`` (the
    config, the checkpoint) decide whether an earlier run in ``out_dir``
    did the same work, whose finished photos are then kept. With
    ``check_agreement`` the segmenter's setting is kept only if it labels
    the first batch of photos as eager fp32 does (:func:`fashionseg.
    inference.segmenter.checked_segmenter`)."""
    check_segment_options(workers, max_side)
    backend = CRFBackend.choose(crf_backend, segmenter.device.type)
    meta = segmenter.model.dataset_meta or {}
    palette = meta.get('palette') or _default_palette(segmenter.num_classes)
    out_dir = Path(out_dir)
    plans = plan_outputs(photos, out_dir)
    if check_agreement and plans:
        segmenter = _checked(segmenter, plans, max_side, say)
    settings = segment_settings(settings, segmenter.settings, crf_params,
                                backend.name, max_side)
    # One run at a time in a folder: a second would take this run's
    # temporaries and outputs for an interrupted run's.
    new_folder = not out_dir.exists()
    with locked_output_folder(out_dir, 'tools/segment.py'), \
            _gone_if_nothing_written(out_dir, new_folder):
        done, earlier, others = claim_segment_folder(out_dir, plans,
                                                     settings)
        todo = [plan for plan in plans if plan.labels.name not in done]
        if done:
            say(f'{out_dir}: an earlier run with the same settings finished '
                f'{len(done)} of these {len(plans)} photos; '
                + (f'segmenting the other {len(todo)}' if todo
                   else 'nothing is left to segment'))
        elif earlier and not others:
            say(f'{out_dir}: holds an earlier run\'s outputs of these photos '
                '(other settings, or unfinished); segmenting all '
                f'{len(plans)} photos again')
        if others:
            say(f'{out_dir}: keeps the outputs of {len(others)} other '
                'photos an earlier run with the same settings segmented')
        _write_manifest(out_dir, plans, settings, done, earlier, False,
                        others)
        batch_size = segmenter.settings.batch_size
        by_photo = {plan.photo: plan for plan in todo}
        manifest = (out_dir, plans, settings, earlier, others)
        # Both closed before an error leaves: the bar finishes its line and
        # the decoding threads stop, before the tool prints the error.
        with tqdm(total=len(todo), unit='photo', disable=not progress,
                  desc='segmenting') as bar, contextlib.closing(decoded_photos(
                      [plan.photo for plan in todo], workers,
                      ahead=workers + batch_size)) as decoded:
            # One batch in flight (Segmenter.stream): on a GPU the next batch
            # is copied and segmented while this one is refined and written.
            taken = collections.deque()

            def batches():
                for batch in _batches_of(decoded, by_photo, batch_size):
                    work = [_at_most(image, max_side) for _, image in batch]
                    inputs, metas = segmenter.prepare_batch(work)
                    taken.append((batch, work, metas))
                    yield inputs, metas

            for predictions in segmenter.stream(
                    batches(), keep_scores=crf_params is not None):
                batch, work, metas = taken.popleft()
                _finish_batch(batch, work, metas, predictions, palette,
                              crf_params, backend, done, manifest)
                bar.update(len(batch))
        # What an earlier run left unfinished, of photos this run does not
        # segment, goes: the folder holds what its manifest says, nothing
        # else (the finished outputs of other photos are kept, and those
        # of another settings' run were refused before any work).
        wanted = {name for plan in plans
                  for name in (plan.labels.name, plan.overlay.name)} | {
                      name for label in others
                      for name in (label, overlay_name(label))}
        for name in earlier:  # plain names (read_manifest)
            if (out_dir / name).is_file() and not _one_of(out_dir, name,
                                                          wanted):
                (out_dir / name).unlink()
        _write_manifest(out_dir, plans, settings, done, (), True, others)
    return dict(photos=len(plans), segmented=len(todo),
                kept_from_earlier_run=len(plans) - len(todo),
                other_photos_kept=len(others),
                out_dir=str(out_dir),
                label_maps=[str(plan.labels) for plan in plans],
                overlays=[str(plan.overlay) for plan in plans],
                engine=segmenter.settings.name(),
                crf=crf_params.as_dict() if crf_params else None)


def _checked(segmenter: Segmenter, plans: Sequence[PhotoOutputs],
             max_side: int, say) -> Segmenter:
    """:func:`checked_segmenter` on the first batch of photos."""
    work = [_at_most(read_photo(plan.photo), max_side)
            for plan in plans[:segmenter.settings.batch_size]]
    chosen, check = checked_segmenter(segmenter,
                                      *segmenter.prepare_batch(work))
    say(f'inference engine: {describe_check(check, "photos")}')
    return chosen


def _batches_of(decoded, by_photo: dict, size: int
                ) -> Iterator[List[Tuple['PhotoOutputs', np.ndarray]]]:
    """(plan, photo) lists of ``size`` (the last one smaller) from the
    decoding threads' (path, photo)."""
    batch = []
    for path, image in decoded:
        batch.append((by_photo[path], image))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _finish_batch(batch, work, metas, predictions, palette, crf_params,
                  backend, done, manifest) -> None:
    """Refine (with ``crf_params``) and write one segmented batch, then
    record its photos as done (a photo counts as done once both its files
    are written). ``work`` are the photos as segmented: a photo whose
    longer side exceeds the maximum is segmented (and refined) at that
    size and its labels enlarged (nearest neighbour)."""
    labels = [p.labels.numpy() for p in predictions]
    if crf_params is not None:
        rgb = [np.ascontiguousarray(image[:, :, ::-1]) for image in work]
        labels = refine_predictions(predictions, metas, rgb, crf_params,
                                    backend)
    for (plan, image), label in zip(batch, labels):
        if label.shape != image.shape[:2]:
            label = mmcv.imresize(np.asarray(label, np.uint8),
                                  (image.shape[1], image.shape[0]),
                                  interpolation='nearest')
        with atomic_write(plan.labels, binary=True) as f:
            colour_labels(label, palette).save(f, format='PNG')
        with atomic_write(plan.overlay, binary=True) as f:
            # zlib's fastest level: a 12-megapixel photo's overlay in
            # 1.5 s instead of 6 s at the default, 20 % larger.
            Image.fromarray(overlay(image, label, palette)).save(
                f, format='PNG', compress_level=OVERLAY_PNG_LEVEL)
        done[plan.labels.name] = _photo_record(plan.photo)
    out_dir, plans, settings, earlier, others = manifest
    _write_manifest(out_dir, plans, settings, done, earlier, False, others)


def _at_most(image: np.ndarray, max_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    return mmcv.imresize(image, (max(1, round(width * scale)),
                                 max(1, round(height * scale))),
                         interpolation='area')


def _default_palette(num_classes: int) -> list:
    """Distinct colours for a checkpoint that carries no palette."""
    rng = np.random.default_rng(0)
    return [[0, 0, 0]] + rng.integers(
        0, 256, (num_classes - 1, 3)).tolist()

"""JPEG bytes decoded on the engine's device: torchvision's decoder (nvJPEG
on a GPU, batched; libjpeg on a CPU), for the engine's ``decode=device``
setting (:mod:`fashionseg.inference.settings`).

The config's pipeline decodes with mmcv (OpenCV's libjpeg) on the host.
Another decoder may round some pixels differently (inverse DCT, chroma
upsampling), and nvJPEG leaves EXIF orientation unapplied, so labels of
images decoded here are trusted only as far as they agree with eager fp32
on the host-decoded images, as every fast setting's are
(:data:`~fashionseg.inference.settings.AGREEMENT_BAR`).
"""
from typing import List, Sequence

import torch

from fashionseg.errors import UsageError

# The test pipeline steps that decoding on the device replaces or does
# itself: loading (decoding) and packing (to 3 x H x W).
_DECODE_AND_PACK = ('LoadImageFromNDArray', 'PackSegInputs')


class DeviceDecodingError(UsageError):
    """``decode=device`` where it cannot run: no torchvision, or a test
    pipeline that transforms the decoded image."""


def check_device_decoding(device, pipeline: Sequence[dict] = ()) -> None:
    """Refuse ``decode=device`` where it cannot run, before any work: a
    small JPEG must decode on ``device`` through torchvision (which may
    be missing, built for another torch, or built without nvJPEG), and
    the test ``pipeline`` (as :func:`fashionseg.inference.segmenter.
    test_pipeline_for_arrays` gives it) must only decode and pack: other
    steps (a resize, say) run on the host's arrays."""
    others = [step['type'] for step in pipeline
              if step['type'] not in _DECODE_AND_PACK]
    if others:
        raise DeviceDecodingError(
            'decode=device runs test pipelines that only load and pack '
            f'the image; this one also has {", ".join(others)}')
    import cv2
    import numpy as np
    pixels = np.zeros((16, 24, 3), np.uint8)
    pixels[:, :12] = (255, 0, 0)  # blue on the left, in BGR
    try:
        image, = decode_jpegs([cv2.imencode('.jpg', pixels)[1].tobytes()],
                              device)
        if tuple(image.shape) != (3, 16, 24) or \
                int(image[0, 8, 4]) < 200 or int(image[2, 8, 4]) > 50:
            raise RuntimeError('a test image came back as '
                               f'{tuple(image.shape)}, not BGR 3 x 16 x 24')
    except DeviceDecodingError:
        raise
    except Exception as error:  # noqa: BLE001 (any failure: its message)
        raise DeviceDecodingError(
            f'decode=device does not run on {device}: torchvision\'s '
            f'decode_jpeg failed ({type(error).__name__}: {error})'
        ) from None


def _decode_jpeg():
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as error:
        raise DeviceDecodingError(
            'decode=device needs torchvision (torchvision.io.decode_jpeg), '
            f'which does not import here: {error}') from None
    return decode_jpeg, ImageReadMode


def decode_jpegs(data: Sequence[bytes], device) -> List[torch.Tensor]:
    """JPEG bytes to 3 x H x W uint8 tensors on ``device`` in BGR order,
    as ``mmcv.imfrombytes`` and the config's ``PackSegInputs`` give them
    (greyscale photos as three equal channels); one batched call."""
    decode_jpeg, ImageReadMode = _decode_jpeg()
    device = torch.device(device)
    encoded = [torch.frombuffer(bytearray(item), dtype=torch.uint8)
               for item in data]
    if device.type == 'cuda':
        # nvJPEG's hardware decoder may write into memory that work
        # queued on the stream still reads (pytorch/vision#9606): that
        # work finishes first.
        torch.cuda.current_stream(device).synchronize()
    images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    return [image.flip(0) for image in images]

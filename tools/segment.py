"""Segment your own photos with a trained model: one label map (PNG, the
dataset's palette) and one side-by-side overlay per photo, optionally
refined by the dense CRF with searched parameters.

    python tools/segment.py CONFIG CHECKPOINT PHOTO_OR_FOLDER... --out DIR \\
        [--crf crf_search.json] [--backend torch|pydensecrf] \\
        [--batch-size 8] [--precision bf16] [--device cuda]
"""
import argparse
import sys
from pathlib import Path

from fashionseg.crf.refine import CRFInputError
from fashionseg.crf.search import read_best_params
from fashionseg.engine.checkpoint import CheckpointMismatchError
from fashionseg.engine.segment_photos import (CRF_BACKENDS, PhotoInputError,
                                              collect_photos, segment_photos)
from fashionseg.engine.segmenter import Segmenter
from fashionseg.utils.cli import (add_device_argument, add_inference_arguments,
                                  inference_settings)
from fashionseg.utils.device import select_device


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('inputs', nargs='+', metavar='PHOTO_OR_FOLDER')
    parser.add_argument('--out', type=Path, required=True,
                        help='folder for STEM.png and STEM_overlay.png')
    parser.add_argument('--crf', type=Path, metavar='PARAMS.json',
                        help='refine with these CRF parameters (a '
                        'tools/crf.py search result, or {"best": {...}})')
    parser.add_argument('--backend', choices=CRF_BACKENDS, default='torch',
                        help='CRF backend: torch on the model\'s device '
                        '(default) or pydensecrf on one core')
    parser.add_argument('--workers', type=int, default=4,
                        help='threads decoding photos')
    add_inference_arguments(parser, batch_size=4)
    add_device_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    device = select_device(args.device)
    settings = inference_settings(args)
    try:
        params = read_best_params(args.crf) if args.crf else None
        photos = collect_photos(args.inputs)
        segmenter = Segmenter.from_config(args.config, args.checkpoint,
                                          device, settings)
        result = segment_photos(segmenter, photos, args.out, params,
                                args.backend, args.workers)
    except (CRFInputError, PhotoInputError, CheckpointMismatchError,
            FileNotFoundError) as error:
        sys.exit(f'error: {error}')
    print(f'{result["photos"]} photos segmented into {result["out_dir"]}'
          + (' (CRF-refined)' if params else ''))


if __name__ == '__main__':
    main()

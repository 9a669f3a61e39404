"""Segment your own photos with a trained model: one label map (PNG, the
dataset's palette) and one side-by-side overlay per photo, optionally
refined by the dense CRF with searched parameters.

    python tools/segment.py CONFIG CHECKPOINT PHOTO_OR_FOLDER... --out DIR \\
        [--crf crf_search.json] [--backend torch|pydensecrf] \\
        [--batch-size 8] [--precision bf16] [--device cuda]
"""
import argparse
from pathlib import Path

from fashionseg.crf.backend import BACKEND_NAMES
from fashionseg.crf.search import read_best_params
from fashionseg.inference.arguments import (add_inference_arguments,
                                            inference_settings)
from fashionseg.inference.photos import collect_photos, segment_photos
from fashionseg.inference.segmenter import Segmenter
from fashionseg.utils.cli import add_device_argument, run_tool
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
    parser.add_argument('--backend', choices=BACKEND_NAMES, default='torch',
                        help='CRF backend: torch on the model\'s device '
                        '(default), pydensecrf on one core, or auto '
                        '(torch on a GPU, else pydensecrf)')
    parser.add_argument('--workers', type=int, default=4,
                        help='threads decoding photos')
    add_inference_arguments(parser, batch_size=4)
    add_device_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    device = select_device(args.device)
    settings = inference_settings(args)
    params = read_best_params(args.crf) if args.crf else None
    photos = collect_photos(args.inputs)
    segmenter = Segmenter.from_config(args.config, args.checkpoint, device,
                                      settings)
    result = segment_photos(segmenter, photos, args.out, params,
                            args.backend, args.workers)
    print(f'{result["photos"]} photos segmented into {result["out_dir"]}'
          + (' (CRF-refined)' if params else ''))


if __name__ == '__main__':
    run_tool(main, also=(FileNotFoundError,))

"""Segment your own photos with a trained model: one label map (PNG, the
dataset's palette) and one side-by-side overlay per photo, optionally
refined by the dense CRF with searched parameters.

    python tools/segment.py CONFIG CHECKPOINT PHOTO_OR_FOLDER... --out DIR \\
        [--crf crf_search.json] [--backend auto|torch|pydensecrf] \\
        [--batch-size 8] [--precision bf16] [--channels-last] [--fold-bn]
        [--device cuda] [--max-side PX]

--out must be a new or empty folder, or one this tool wrote before (its
segment.json says what is in it): a rerun finishes what an interrupted one
left undone, and a run of other photos with the same settings adds them
beside the earlier ones. One run at a time writes into a folder; a second
stops at once.
"""
import argparse
from pathlib import Path

from fashionseg.crf.backend import BACKEND_NAMES
from fashionseg.crf.search import read_best_params
from fashionseg.inference.arguments import (add_inference_arguments,
                                            tool_settings)
from fashionseg.inference.photos import (DEFAULT_MAX_SIDE,
                                         check_before_loading,
                                         check_segment_options, collect_photos,
                                         segment_photos)
from fashionseg.inference.segmenter import Segmenter
from fashionseg.utils.cli import (add_device_argument, positive_int, run_tool,
                                  tool_description)
from fashionseg.utils.device import select_device


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('inputs', nargs='+', metavar='PHOTO_OR_FOLDER')
    parser.add_argument('--out', type=Path, required=True,
                        help='folder for STEM.png and STEM_overlay.png')
    parser.add_argument('--crf', type=Path, metavar='PARAMS.json',
                        help='refine with these CRF parameters (a '
                        'tools/crf.py search result, or {"best": {...}})')
    parser.add_argument('--backend', choices=BACKEND_NAMES, default='auto',
                        help='CRF backend: auto (the default: torch on a '
                        'GPU, else pydensecrf), torch on the model\'s '
                        'device (every core of a CPU), or pydensecrf on one '
                        'core')
    parser.add_argument('--workers', type=positive_int, default=4,
                        help='threads decoding photos (default 4)')
    parser.add_argument('--max-side', type=positive_int,
                        default=DEFAULT_MAX_SIDE, metavar='PX',
                        help='a photo whose longer side is larger is '
                        'segmented at this size and its labels enlarged '
                        f'to the photo\'s (default {DEFAULT_MAX_SIDE})')
    add_inference_arguments(parser, batch_size=4)
    add_device_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    device = select_device(args.device)
    settings, check_agreement = tool_settings(args, device)
    params = read_best_params(args.crf) if args.crf else None
    photos, notes = collect_photos(args.inputs)
    for note in notes:
        print(f'left out: {note}')
    check_segment_options(args.workers, args.max_side)
    # (The engine's setting is known now unless a fast default is to be
    # checked against eager fp32 first.)
    run = check_before_loading(args.config, args.checkpoint, photos,
                               args.out, params, args.backend, device,
                               args.max_side,
                               None if check_agreement else settings)
    segmenter = Segmenter.from_config(args.config, args.checkpoint, device,
                                      settings)
    result = segment_photos(
        segmenter, photos, args.out, params, args.backend, args.workers,
        settings=run, max_side=args.max_side,
        check_agreement=check_agreement)
    print(f'{result["photos"]} photos segmented into {result["out_dir"]}'
          f' (inference engine: {result["engine"]})'
          + (' (CRF-refined)' if params else '')
          + (f'; {result["kept_from_earlier_run"]} of them by an earlier '
             'run' if result['kept_from_earlier_run'] else '')
          + (f'; the outputs of {result["other_photos_kept"]} other photos '
             'kept beside them' if result['other_photos_kept'] else ''))


if __name__ == '__main__':
    run_tool(main, also=(FileNotFoundError,))

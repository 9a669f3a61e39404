"""Measure the dense CRF's images per second (600 x 400, 23 classes, 10
iterations) on one core and on all cores; prints JSON, or writes it with
--out."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashionseg.crf_benchmark import run_benchmark  # noqa: E402
from fashionseg.io import write_text_atomic  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--photo', type=Path,
                        help='a photo to use (resized to 600 x 400)')
    parser.add_argument('--images', type=int, default=8)
    parser.add_argument('--out', type=Path)
    return parser.parse_args()


def main():
    args = parse_args()
    text = json.dumps(run_benchmark(args.photo, args.images), indent=2)
    if args.out:
        write_text_atomic(args.out, text + '\n')
    print(text)


if __name__ == '__main__':
    main()

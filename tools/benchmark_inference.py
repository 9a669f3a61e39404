"""Throughput of a trained model on real test images, without and with the
dense CRF (paper section 5), with its parameter count and peak memory.

    python tools/benchmark_inference.py CONFIG CHECKPOINT --data-root DIR \\
        [--images 50] [--device cuda] [--crf-params crf_search.json] \\
        [--out benchmark.json]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashionseg.device import select_device  # noqa: E402
from fashionseg.crf_refine import CRFInputError  # noqa: E402
from fashionseg.crf_search import read_best_params  # noqa: E402
from fashionseg.inference_benchmark import benchmark_inference  # noqa: E402
from fashionseg.io import write_text_atomic  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--data-root', type=Path, required=True)
    parser.add_argument('--split', default='test')
    parser.add_argument('--images', type=int, default=50,
                        help='images to time (after 2 warm-up images)')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'],
                        default='auto')
    parser.add_argument('--crf-params', type=Path,
                        help='a CRF search result; also time the CRF')
    parser.add_argument('--out', type=Path, help='JSON file to write')
    return parser.parse_args()


def main():
    args = parse_args()
    device = select_device(args.device)
    try:
        params = read_best_params(args.crf_params) \
            if args.crf_params else None
    except CRFInputError as error:
        sys.exit(f'error: {error}')
    record = benchmark_inference(args.config, args.checkpoint,
                                 args.data_root, args.split, args.images,
                                 device, params)
    text = json.dumps(record, indent=2) + '\n'
    if args.out:
        write_text_atomic(args.out, text)
    print(f'{record["images_per_s"]:.2f} images/s without CRF'
          + (f', {record["images_per_s_with_crf"]:.2f} with CRF'
             if params else '') + f' on {record["device_name"]}')


if __name__ == '__main__':
    main()

"""Throughput of a trained model on real test images, without and with the
dense CRF: the paper's protocol (section 5; one image at a time through
MMSegmentation's inference_model), then the fast inference engine in each
setting asked for (by default the device's own, DEVICE_DEFAULTS in
fashionseg/inference/settings.py; ``--engine none`` for the protocol
alone), with its agreement with eager fp32.

    python tools/benchmark_inference.py CONFIG CHECKPOINT --data-root DIR \\
        [--images 50] [--device cuda] [--crf-params crf_search.json] \\
        [--engine fp32,batch=16 bf16,channels-last,compile=max-autotune,\\
batch=32] [--batches 100] [--agreement-images N] [--out benchmark.json]
"""
import argparse
from pathlib import Path

from fashionseg.benchmarks.engine_throughput import benchmark_engine
from fashionseg.benchmarks.inference import benchmark_inference
from fashionseg.config_checks import check_checkpoint, check_config_path
from fashionseg.crf.search import read_best_params
from fashionseg.errors import UsageError
from fashionseg.inference.jpeg_decoding import check_device_decoding
from fashionseg.inference.settings import InferenceSettings
from fashionseg.utils.cli import (add_device_argument, emit_json, positive_int,
                                  run_tool, tool_description)
from fashionseg.utils.device import select_device
from fashionseg.utils.output_folder import (check_result_file,
                                            is_inference_benchmark_file)


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='trained weights')
    parser.add_argument('--data-root', type=Path, required=True,
                        help='converted dataset folder')
    parser.add_argument('--split', default='test',
                        choices=['train', 'val', 'test'],
                        help='split whose photos are timed (default test)')
    parser.add_argument('--images', type=positive_int, default=50,
                        help='images to time (after 2 warm-up images)')
    add_device_argument(parser)
    parser.add_argument('--crf-params', type=Path,
                        help='a CRF search result; also time the CRF')
    parser.add_argument('--engine', nargs='+', metavar='SETTING',
                        help='engine settings to time: PRECISION[,channels-'
                        'last][,fold-bn][,compile=MODE][,batch=N][,decode='
                        'device] (decode=device: JPEG decoded by torchvision '
                        'on the device, nvJPEG on a GPU); default: '
                        'the device\'s own (bf16,channels-last,batch=32 on a '
                        'GPU, fp32,channels-last,batch=1 on a CPU); none: '
                        'the paper\'s protocol alone')
    parser.add_argument('--batches', type=positive_int, default=100,
                        help='timed batches per engine setting (after 3 '
                        'warm-up batches)')
    parser.add_argument('--agreement-images', type=positive_int,
                        metavar='N', help='check the engine\'s agreement '
                        'with eager fp32 on the split\'s first N images '
                        '(default: all of them; recorded in the JSON)')
    parser.add_argument('--out', type=Path, help='JSON file to write')
    return parser.parse_args()


def main():
    args = parse_args()
    device = select_device(args.device)
    params = read_best_params(args.crf_params) if args.crf_params else None
    try:
        if args.engine is None:
            settings = [InferenceSettings.device_default(device)]
        elif args.engine == ['none']:
            settings = []
        else:
            settings = [InferenceSettings.parse(text)
                        for text in args.engine]
    except ValueError as error:
        raise UsageError(f'--engine: {error}') from None
    check_config_path(args.config)
    check_checkpoint(args.checkpoint)
    if args.out is not None:
        # Before minutes of timing, not after.
        check_result_file(args.out, 'tools/benchmark_inference.py', '--out',
                          is_inference_benchmark_file,
                          inputs=[args.config, args.checkpoint,
                                  args.data_root, args.crf_params])
    if any(setting.decode == 'device' for setting in settings):
        # Before the paper's protocol runs: a missing torchvision ends
        # the tool at once.
        check_device_decoding(device)
    record = benchmark_inference(args.config, args.checkpoint,
                                 args.data_root, args.split, args.images,
                                 device, params)
    if settings:
        record['engine'] = benchmark_engine(
            args.config, args.checkpoint, args.data_root, settings,
            args.split, device, args.batches, crf_params=params,
            agreement_images=args.agreement_images)
    if args.out:
        emit_json(record, args.out, echo=False)
    print(f'{record["images_per_s"]:.2f} images/s without CRF'
          + (f', {record["images_per_s_with_crf"]:.2f} with CRF'
             if params else '') + f' on {record["device_name"]} (the '
          'paper\'s protocol)')
    for row in record.get('engine', {}).get('settings', []):
        print(f'engine {row["name"]}: {row["model_images_per_s"]:.2f} '
              f'images/s model only, {row["end_to_end_images_per_s"]:.2f} '
              f'end to end, agreement {100 * row["agreement"]:.3f} % '
              f'({record["engine"]["agreement_images"]} images)'
              + ('' if row.get('fraction_of_peak_model_only') is None else
                 f', {100 * row["fraction_of_peak_model_only"]:.1f} % of '
                 f'the GPU\'s {row["precision"]} peak model only')
              + ('' if row['agrees'] else ' (below the bar: not used)'))
    engine = record.get('engine', {})
    if engine.get('end_to_end_with_crf_images_per_s') is not None:
        print(f'engine {engine["best"]} with the PyTorch CRF: '
              f'{engine["end_to_end_with_crf_images_per_s"]:.2f} images/s '
              'end to end')


if __name__ == '__main__':
    run_tool(main)

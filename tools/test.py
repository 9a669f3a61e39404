"""Test a trained checkpoint: metrics JSON and, with --out, the class scores
of every test image for the CRF stage.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out DIR] \
        [--batch-size 8] [--precision fp32|tf32|bf16|fp16] [--channels-last]
        [--fold-bn] [--compile MODE]

Images go through the fast inference engine. On a CPU the default (eager
fp32, TF32 off) gives MMSegmentation's own labels; on a GPU the default is
the GPU's fast setting where it labels the first batch as eager fp32 does.
The metrics file says which setting ran.
"""
import argparse
import json

from fashionseg.errors import UsageError
from fashionseg.inference.arguments import (add_inference_arguments,
                                            tool_settings)
from fashionseg.runner.arguments import add_runner_arguments
from fashionseg.runner.run_config import set_local_rank_env
from fashionseg.runner.testing import (configure_testing, describe_engine,
                                       run_test)
from fashionseg.utils.cli import (add_max_images_argument, run_tool,
                                  tool_description)
from fashionseg.utils.device import select_device


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs (and '
                        'metrics.json when --out is not given)')
    parser.add_argument('--out', help='folder for metrics.json and one '
                        'STEM.npz of class scores per test image')
    parser.add_argument('--metrics', help='metrics JSON to write (default: '
                        'metrics.json in --out or the work dir); the '
                        'per-image confusion matrices go beside it, '
                        'NAME.confusion.npz')
    parser.add_argument('--split', nargs='+',
                        choices=['train', 'val', 'test'],
                        help='test on this split of the converted dataset '
                        'instead of the config\'s (the CRF search needs '
                        'val scores); with several splits, one after the '
                        'other in this process, --out and --metrics must '
                        'hold {split}')
    add_inference_arguments(parser)
    add_max_images_argument(parser)
    add_runner_arguments(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    set_local_rank_env(args.local_rank)
    device = select_device(args.device)
    settings, check_agreement = tool_settings(args, device)
    splits = args.split or [None]
    for option, template in (('--out', args.out),
                             ('--metrics', args.metrics)):
        if len(splits) > 1 and template and '{split}' not in template:
            raise UsageError(f'testing on {len(splits)} splits needs '
                             f'{{split}} in --out and --metrics, not '
                             f'{template!r}')
        try:
            template and template.format(split='val')
        except (KeyError, IndexError, ValueError, AttributeError):
            raise UsageError(f'{option} {template!r}: the only name in '
                             'braces it may hold is {split}') from None
    # Every split's run configured (and its outputs checked) before the
    # first one runs.
    cfgs = []
    for split in splits:
        out, metrics = (t.format(split=split) if t and split else t
                        for t in (args.out, args.metrics))
        cfgs.append(configure_testing(
            args.config, args.checkpoint, args.work_dir, out,
            args.cfg_options, args.launcher, split, metrics, args.data_root,
            settings, args.max_images, check_agreement))
    for cfg in cfgs:
        record = run_test(cfg, args.config, args.checkpoint)
        print(f'inference engine: {describe_engine(record["engine"])}')
        print(json.dumps({k: record[k] for k in ('aAcc', 'mIoU', 'mAcc')}))
        print(f'metrics written to {cfg.metrics_out}')


if __name__ == '__main__':
    run_tool(main)

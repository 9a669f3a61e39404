"""Train a segmentor with the paper's recipe.

    python tools/train.py mmseg_configs/fpn_x101_cfpd.py
    torchrun --nproc_per_node N tools/train.py CONFIG --launcher pytorch
"""
import argparse

from fashionseg.runner.arguments import add_runner_arguments
from fashionseg.runner.run_config import set_local_rank_env
from fashionseg.runner.speedups import SPEEDUPS, parse_speedups
from fashionseg.runner.training import configure_training, train
from fashionseg.utils.cli import (add_max_images_argument, run_tool, seed_int,
                                  tool_description)
from fashionseg.utils.device import parse_bool, select_device


def parse_args():
    parser = argparse.ArgumentParser(description=tool_description(__doc__))
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', action='store_true',
        help='resume from the latest checkpoint in the work_dir')
    parser.add_argument(
        '--auto-resume', action='store_true',
        help='resume when the work dir holds an unfinished run of the same '
        'config and seed; otherwise move its checkpoints aside (WORK_DIR/'
        'stale-N/) and start afresh (what the pipeline uses)')
    parser.add_argument(
        '--amp', nargs='?', const=True, default=False, type=parse_bool,
        help='mixed-precision training: bf16 on the CPU and on GPUs that '
        'compute it natively, fp16 with loss scaling on older GPUs; also '
        '--amp true|false')
    parser.add_argument(
        '--no-pretrained', action='store_true',
        help='train from scratch instead of from ImageNet weights '
        '(recorded in WORK_DIR/run_record.json)')
    parser.add_argument(
        '--pretrained', type=parse_bool, default=True,
        help='true|false; false is --no-pretrained (default true)')
    parser.add_argument('--export-best', metavar='PATH',
                        help='after training, write the best checkpoint\'s '
                        'weights (without optimizer state) to PATH')
    parser.add_argument('--dvclive-dir', help='folder for the DVCLive '
                        'training curves (default WORK_DIR/dvclive)')
    parser.add_argument('--seed', type=seed_int, help='random seed')
    parser.add_argument(
        '--speedups', default='none', metavar='NAME[,NAME]',
        help=f'training speed-ups: {", ".join(SPEEDUPS)} (or none, the '
        'default); all but compile compute the same step (docs/training.md)')
    add_max_images_argument(parser)
    add_runner_arguments(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    set_local_rank_env(args.local_rank)
    select_device(args.device)
    cfg = configure_training(
        args.config, work_dir=args.work_dir, cfg_options=args.cfg_options,
        resume=args.resume, amp=args.amp,
        pretrained=args.pretrained and not args.no_pretrained,
        launcher=args.launcher, seed=args.seed,
        auto_resume=args.auto_resume, dvclive_dir=args.dvclive_dir,
        data_root=args.data_root, max_images=args.max_images,
        speedups=parse_speedups(args.speedups),
        export_best=args.export_best)
    train(cfg, args.config, export_best=args.export_best)


if __name__ == '__main__':
    run_tool(main)

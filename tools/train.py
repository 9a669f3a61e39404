"""Train a segmentor with the paper's recipe.

    python tools/train.py mmseg_configs/fpn_x101_cfpd.py
    torchrun --nproc_per_node N tools/train.py CONFIG --launcher pytorch
"""
import argparse
import sys
from pathlib import Path

from mmengine.config import DictAction

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashionseg.training import (configure_training, set_local_rank_env,  # noqa: E402,E501
                                 train)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', action='store_true',
        help='resume from the latest checkpoint in the work_dir')
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed-precision training (bf16 where the GPU supports it)')
    parser.add_argument(
        '--no-pretrained', action='store_true',
        help='train from scratch instead of from ImageNet weights '
        '(recorded in WORK_DIR/run_record.json)')
    parser.add_argument('--seed', type=int, help='random seed')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value (mmengine syntax)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    set_local_rank_env(args.local_rank)
    cfg = configure_training(
        args.config, work_dir=args.work_dir, cfg_options=args.cfg_options,
        resume=args.resume, amp=args.amp, pretrained=not args.no_pretrained,
        launcher=args.launcher, seed=args.seed)
    train(cfg, args.config)


if __name__ == '__main__':
    main()

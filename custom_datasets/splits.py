"""Train / validation / test splits of the paper's datasets.

Fashionista and CFPD follow Tangseng et al., "Looking at outfit to parse
clothing" (2017), whose splits the paper uses (its section 4.1). All positions
are 1-based, in file order.
"""
import math
from typing import Dict, List, Sequence

from fashionseg.dataset_folder import SPLITS


def _matlab_round(x: float) -> int:
    """Round half away from zero, as MATLAB's ``round`` (Python's ``round``
    rounds half to even)."""
    return int(math.floor(x + 0.5))


def fashionista_splits(num_samples: int,
                       test_positions: Sequence[int]) -> Dict[str, List[int]]:
    """Test = ``test_index``; of the other positions in order, every 10th
    (the 10th, 20th, ...) is validation and the rest train."""
    test = sorted(set(int(p) for p in test_positions))
    bad = [p for p in test if not 1 <= p <= num_samples]
    if bad:
        raise ValueError(f'test_index holds positions outside 1..'
                         f'{num_samples}: {bad[:5]}')
    test_set = set(test)
    rest = [p for p in range(1, num_samples + 1) if p not in test_set]
    val = rest[9::10]
    val_set = set(val)
    train = [p for p in rest if p not in val_set]
    return dict(train=train, val=val, test=test)


def cfpd_splits(num_samples: int) -> Dict[str, List[int]]:
    """With N photos, v = round(0.02 N), t = round(0.2 N), r = N - v - t:
    test is r+1..r+t; validation is r-v+1..r and r+t+1..N; train the rest.

    For the real 2,682 photos: 2,038 / 108 / 536.
    """
    n = num_samples
    v, t = _matlab_round(0.02 * n), _matlab_round(0.2 * n)
    r = n - v - t
    test = list(range(r + 1, r + t + 1))
    val = list(range(r - v + 1, r + 1)) + list(range(r + t + 1, n + 1))
    train = list(range(1, r - v + 1))
    return dict(train=train, val=val, test=test)


def ccp_split_of(image_id: int) -> str:
    """Test = ids divisible by 5, validation = ids with remainder 1 mod 10,
    train = the rest (CCP has no official split)."""
    if image_id % 5 == 0:
        return 'test'
    if image_id % 10 == 1:
        return 'val'
    return 'train'


def ccp_splits(image_ids: Sequence[int]) -> Dict[str, List[int]]:
    splits = {name: [] for name in SPLITS}
    for image_id in image_ids:
        splits[ccp_split_of(image_id)].append(image_id)
    return splits

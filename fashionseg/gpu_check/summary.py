"""The check's record against the harness's GPU bars, and as a readable
table (``gpu_check.md``)."""


def _get(record: dict, *path):
    node = record
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def bars(record: dict) -> dict:
    """The GPU bars of the harness's issues, measured against their
    targets."""
    checks = record['checks']
    engine = _get(checks, 'inference', 'engine') or {}
    best = next((r for r in engine.get('settings', [])
                 if r['name'] == engine.get('best')), {})
    fp32 = _get(checks, 'train', 'benchmark', 'fp32_batch5') or {}
    measured = {
        'training bf16 images/s (full loop)': (_get(
            checks, 'train', 'benchmark', 'bf16_batch16',
            'images_per_second_full_loop'), 350),
        'full loop / model only at batch 5 fp32': (
            fp32.get('full_loop_fraction_of_model_only'), 0.9),
        'PyTorch CRF images/s at 600 x 400': (max(
            (_get(checks, 'crf', 'images_per_s') or {0: 0}).values()), 100),
        'CRF search 50 x 108 (seconds, at most)': (
            _get(checks, 'crf', 'search', 'seconds'), 120),
        'engine images/s model only': (best.get('model_images_per_s'), 2500),
        'engine images/s end to end': (best.get('end_to_end_images_per_s'),
                                       1500),
        'engine with CRF images/s end to end': (
            engine.get('end_to_end_with_crf_images_per_s'), 100),
    }
    out = {}
    for name, (value, target) in measured.items():
        at_most = 'at most' in name
        met = value is not None and (value <= target if at_most
                                     else value >= target)
        out[name] = dict(measured=value, target=target, met=met)
    return out


def summary_table(record: dict) -> str:
    """The record as readable Markdown."""
    lines = [f'# GPU check on {record["device_name"]}'
             + (' (quick)' if record['quick'] else ''), '',
             '| step | status | seconds | detail |', '|---|---|---|---|']
    for name, check in record['checks'].items():
        detail = check.get('error', '')
        if name == 'projection' and check['status'] == 'pass':
            detail = f'make repro: about {check["total_hours"]:.1f} h'
        lines.append(f'| {name} | {check["status"]} | '
                     f'{check["wall_seconds"]:.1f} | '
                     f'{str(detail)[:200].replace("|", "/")} |')
    if record.get('bars'):
        lines += ['', '| bar | measured | target | met |',
                  '|---|---|---|---|']
        for name, bar in record['bars'].items():
            value = bar['measured']
            lines.append(f'| {name} | '
                         f'{"-" if value is None else f"{value:.2f}"} | '
                         f'{bar["target"]} | {"yes" if bar["met"] else "no"}'
                         ' |')
    return '\n'.join(lines) + '\n'

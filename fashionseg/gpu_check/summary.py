"""The check's record against the harness's GPU bars, and as a readable
table (``gpu_check.md``)."""


def bars(record: dict) -> dict:
    """The GPU bars of the harness's issues, measured against their
    targets."""
    # Every figure is read from the steps' measurements, which the record
    # holds whether a step passed or ran out of time part-way.
    measured = {name: check.get('measured') or {}
                for name, check in record['checks'].items()}
    train, crf = measured.get('train', {}), measured.get('crf', {})
    inference = measured.get('inference', {})
    # The faster of the bf16 runs (cuDNN's heuristics, autotuned).
    bf16 = max((v for k, v in train.items()
                if k.startswith('benchmark_bf16') and isinstance(v, dict)),
               key=lambda v: v['images_per_second_full_loop'], default={})
    fp32 = train.get('benchmark_fp32_batch5') or {}
    fp32_fast = train.get('benchmark_fp32_batch5_speedups') or {}
    crf_rates = [v for k, v in crf.items()
                 if k.startswith('torch_images_per_s')]
    all_engine_rows = [v for k, v in inference.items()
                       if k.startswith('engine ') and isinstance(v, dict)
                       and 'agreement' in v]
    engine_rows = [row for row in all_engine_rows if row.get('agrees')]
    best = max(engine_rows, key=lambda row: row['model_images_per_s'],
               default={})
    # JPEG decoding on the device changes the end-to-end rate only.
    best_end_to_end = max(
        engine_rows, key=lambda row: row['end_to_end_images_per_s'],
        default={})
    figures = {
        'training bf16 batch 16 images/s (full loop)': (
            bf16.get('images_per_second_full_loop'), 350),
        'training bf16 full loop / model only': (
            bf16.get('full_loop_fraction_of_model_only'), 0.9),
        'training bf16 fraction of the GPU\'s peak (full loop)': (
            bf16.get('fraction_of_peak_full_loop'), None),
        'training fp32 batch 5 images/s (full loop)': (
            fp32.get('images_per_second_full_loop'), None),
        'training fp32 batch 5 with the speed-ups images/s (full loop)': (
            fp32_fast.get('images_per_second_full_loop'), None),
        'training fp32 batch 5, speed-ups / plain': (
            _ratio(fp32_fast.get('images_per_second_full_loop'),
                   fp32.get('images_per_second_full_loop')), 1.5),
        'PyTorch CRF images/s at 600 x 400': (
            max(crf_rates) if crf_rates else None, 100),
        'CRF search 50 x 108, projected (seconds, at most)': (
            (crf.get('search') or {}).get('projected_seconds_50x108'), 120),
        'engine images/s model only': (best.get('model_images_per_s'), 2500),
        'engine fraction of the GPU\'s peak (model only)': (
            best.get('fraction_of_peak_model_only'), None),
        'engine images/s end to end': (
            best_end_to_end.get('end_to_end_images_per_s'), 1500),
        'engine with CRF images/s end to end': (
            inference.get('engine with CRF images/s end to end'), 100),
        # Every row, not only the fastest: the labels of each equal eager
        # fp32's on this fraction of the pixels or more.
        'engine agreement with eager fp32, least of any row': (
            min((row['agreement'] for row in all_engine_rows),
                default=None), 0.995),
    }
    out = {}
    for name, (value, target) in figures.items():
        at_most = 'at most' in name
        met = None if target is None else value is not None and (
            value <= target if at_most else value >= target)
        out[name] = dict(measured=value, target=target, met=met)
    return out


def _ratio(a, b):
    return a / b if a is not None and b else None


def _cell(value) -> str:
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return f'{value:.2f}' if isinstance(value, float) else str(value)


def summary_table(record: dict) -> str:
    """The record as readable Markdown."""
    lines = [f'# GPU check on {record["device_name"]}'
             + (' (quick)' if record['quick'] else ''), '',
             f'{record.get("wall_seconds", 0):.0f} s of a '
             f'{record.get("budget_seconds", 0):.0f} s budget.', '',
             '| step | status | seconds | detail |', '|---|---|---|---|']
    on_gpu = record.get('device') == 'cuda' and not record['quick']
    for name, check in record['checks'].items():
        detail = check.get('error', '')
        if name == 'projection' and check['status'] == 'pass':
            # A projection from toy sizes or CPU rates says nothing of a
            # GPU's hours; it shows that the step works.
            detail = ('' if on_gpu else 'from this run\'s '
                      + ('quick sizes' if record['quick'] else 'CPU rates')
                      + ', not a GPU\'s at the paper\'s sizes: ') + \
                f'make repro: about {check["total_hours"]:.1f} h' + \
                ''.join(f'; JOBS={gpus} GPUs: {hours:.1f} h' for gpus, hours
                        in check.get('grid_hours', {}).items()
                        if str(gpus) != '1')
        lines.append(f'| {name} | {check["status"]} | '
                     f'{check.get("wall_seconds", 0):.1f} | '
                     f'{str(detail)[:200].replace("|", "/")} |')
    if not on_gpu:
        lines += ['', 'The bars are judged on a GPU at the full sizes '
                  '(not with --device cpu or --quick).']
    projection = record['checks'].get('projection', {})
    if projection.get('status') == 'pass' and projection.get('datasets'):
        lines += ['', '`make repro`, projected per run (hours; each model '
                  'at the check\'s rates scaled by its forward operations'
                  + ('' if on_gpu else '; from this run\'s sizes and '
                     'device, not a GPU\'s at the paper\'s sizes') + '):',
                  '', '| dataset | model | GFLOP/image | hours per run |',
                  '|---|---|---|---|']
        lines += [f'| {row["dataset"]} | {row.get("model", "-")} | '
                  f'{_cell(row.get("forward_gflop_per_image"))} | '
                  f'{row["hours_per_run"]:.2f} |'
                  for row in projection['datasets']]
    if record.get('bars'):
        lines += ['', '| bar | measured | target | met |',
                  '|---|---|---|---|']
        for name, bar in record['bars'].items():
            lines.append(f'| {name} | {_cell(bar["measured"])} | '
                         f'{_cell(bar["target"])} | {_cell(bar["met"])} |')
    return '\n'.join(lines) + '\n'

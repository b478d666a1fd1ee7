"""Verdicts, the printed table, and results files (timm's results schema plus our columns)."""
import csv
import io
import json
import os

from ..atomic import atomic_output
from ..imagenet import NUM_VAL_IMAGES

RESULT_FIELDS = ('model', 'top1', 'top1_err', 'top5', 'top5_err', 'param_count', 'img_size',
                 'crop_pct', 'interpolation', 'num_images', 'published_top1', 'published_top5',
                 'delta_top1', 'delta_top5', 'verdict', 'images_per_sec', 'model_images_per_sec',
                 'engine', 'model_threads', 'decode_workers', 'setup_s', 'tag')


def verdict(num_images, top1, top5, published_top1, published_top5, tolerance, bad_images=0):
    """'PASS' / 'FAIL' against the published numbers, or why there is no verdict."""
    if bad_images:
        return f'no verdict: {bad_images:,} unreadable images skipped'
    if num_images != NUM_VAL_IMAGES:
        return f'no verdict: {num_images:,} of {NUM_VAL_IMAGES:,} images'
    if published_top1 is None:
        return 'no verdict: no published numbers for these weights'
    ok = abs(top1 - published_top1) <= tolerance and abs(top5 - published_top5) <= tolerance
    return 'PASS' if ok else 'FAIL'


def result_row(model, tally, weights, preprocess, params, tolerance, run, tag):
    """``run``: how the images were run, ``{'engine', 'model_threads', 'decode_workers',
    'setup_s'}`` (set-up: building the model's engine and its first run, before the clock)."""
    top1 = 100.0 * tally.top1 / tally.images if tally.images else 0.0
    top5 = 100.0 * tally.top5 / tally.images if tally.images else 0.0
    pub1, pub5 = weights.top1, weights.top5
    return {
        'model': model, 'top1': round(top1, 3), 'top1_err': round(100 - top1, 3),
        'top5': round(top5, 3), 'top5_err': round(100 - top5, 3),
        'param_count': round(params / 1e6, 2), 'img_size': preprocess.img_size,
        'crop_pct': preprocess.crop_pct, 'interpolation': preprocess.interpolation,
        'num_images': tally.images, 'published_top1': pub1, 'published_top5': pub5,
        'delta_top1': None if pub1 is None else round(top1 - pub1, 3),
        'delta_top5': None if pub5 is None else round(top5 - pub5, 3),
        'verdict': verdict(tally.images, top1, top5, pub1, pub5, tolerance, len(tally.bad)),
        'images_per_sec': round(tally.images_per_sec, 1),
        'model_images_per_sec': round(tally.images / tally.compute_s, 1) if tally.compute_s else 0.0,
        **run, 'tag': tag,
    }


def _fmt(value, spec='.3f'):
    return '-' if value is None else format(value, spec)


def format_table(row, tally, weights, layout, tolerance, params):
    lines = [f'{row["model"]} ({row["tag"]} weights, {row["engine"]}: {row["model_threads"]} '
             f'model threads, {row["decode_workers"]} decoding workers, {row["num_images"]:,} '
             f'images, {layout}, {row["img_size"]} px crop {row["crop_pct"]} '
             f'{row["interpolation"]})',
             f'           {"ours":>9} {"published":>10} {"delta":>8}']
    for k in ('top1', 'top5'):
        lines.append(f'  {k[:3]}-{k[3]}    {row[k]:>9.3f} {_fmt(row["published_" + k]):>10} '
                     f'{_fmt(row["delta_" + k], "+.3f"):>8}')
    lines.append(f'  published by: {weights.metrics_source or "-"}')
    lines.append(f'  verdict: {row["verdict"]}' +
                 (f' (tolerance {tolerance:g} points)' if row['verdict'] in ('PASS', 'FAIL') else ''))
    share = tally.wait_s / tally.wall_s if tally.wall_s else 0.0
    alone = row['model_images_per_sec']
    kept = f' ({100 * row["images_per_sec"] / alone:.0f}%)' if alone else ''
    lines.append(f'  parameters: {params:,} | {row["images_per_sec"]:,.1f} img/s end to end, the '
                 f'model alone {alone:,.1f} img/s{kept} | waiting for images {100 * share:.0f}% '
                 f'of the time | set-up {row["setup_s"]:g} s')
    if share > 0.2:
        lines.append('  note: data loading was the bottleneck; raise --workers')
    if tally.bad:
        lines.append(f'  unreadable images skipped ({len(tally.bad)}):')
        lines += [f'    {why}' for _, why in tally.bad]  # each reason names its file
    if tally.compared:
        lines.append(f'  compare-torch: top-1 agreement {100 * tally.agree / tally.compared:.2f}% '
                     f'({tally.agree}/{tally.compared}), max logit difference '
                     f'{tally.max_logit_diff:.3g}')
    return '\n'.join(lines)


def write_results(rows, path):
    """JSON or CSV by extension, written atomically."""
    path = os.fspath(path)
    if path.endswith('.csv'):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        text = json.dumps(rows, indent=2) + '\n'
    with atomic_output(path) as tmp:
        with open(tmp, 'w', encoding='utf-8', newline='') as f:
            f.write(text)

"""Verdicts, the printed table, and results files (timm's results schema plus our columns)."""
import csv
import io
import json
import os

from ..core.atomic import write_text
from ..models.imagenet import NUM_VAL_IMAGES
from .runner import CORES_PER_WORKER, cpu_cores, default_workers

RESULT_FIELDS = ('model', 'top1', 'top1_err', 'top5', 'top5_err', 'param_count', 'img_size',
                 'crop_pct', 'interpolation', 'num_images', 'published_top1', 'published_top5',
                 'delta_top1', 'delta_top5', 'verdict', 'images_per_sec', 'model_images_per_sec',
                 'engine', 'precision', 'model_threads', 'decode_workers', 'setup_s', 'tag',
                 'label_file')
# Weights that are not a registry entry's: their row has no published numbers, no delta.
CUSTOM_TAG = 'custom'
NOT_PUBLISHED = 'no verdict: the published numbers apply to the registry\'s weights only'
# Waiting for images longer than this share of the run is worth a note.
BOTTLENECK_SHARE = 0.2


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


def _comparison(published, top1, top5, tally, tolerance):
    """The published numbers, the deltas and the verdict: only for a registry entry's
    weights (``published``), whose numbers they are; other weights get none."""
    if published is None:
        return {'published_top1': None, 'published_top5': None, 'delta_top1': None,
                'delta_top5': None, 'verdict': NOT_PUBLISHED}
    pub1, pub5 = published.top1, published.top5
    return {'published_top1': pub1, 'published_top5': pub5,
            'delta_top1': None if pub1 is None else round(top1 - pub1, 3),
            'delta_top5': None if pub5 is None else round(top5 - pub5, 3),
            'verdict': verdict(tally.images, top1, top5, pub1, pub5, tolerance, len(tally.bad))}


def result_row(model, tally, published, preprocess, params, tolerance, run, labels):
    """``published``: the registry entry whose weights were evaluated, or None for others.
    ``run``: how the images were run, ``{'engine', 'precision', 'model_threads',
    'decode_workers', 'setup_s'}`` (set-up: building the model's engine and its first run,
    before the clock).
    ``labels``: the :class:`~paddle_dla.evaluation.dataset.LabelSource` read."""
    top1 = 100.0 * tally.top1 / tally.images if tally.images else 0.0
    top5 = 100.0 * tally.top5 / tally.images if tally.images else 0.0
    return {
        'model': model, 'top1': round(top1, 3), 'top1_err': round(100 - top1, 3),
        'top5': round(top5, 3), 'top5_err': round(100 - top5, 3),
        'param_count': round(params / 1e6, 2), 'img_size': preprocess.img_size,
        'crop_pct': preprocess.crop_pct, 'interpolation': preprocess.interpolation,
        'num_images': tally.images, **_comparison(published, top1, top5, tally, tolerance),
        'images_per_sec': round(tally.images_per_sec, 1),
        'model_images_per_sec': round(tally.images / tally.compute_s, 1) if tally.compute_s else 0.0,
        **run, 'tag': published.tag if published else CUSTOM_TAG,
        'label_file': os.path.abspath(labels.path),
    }


def _fmt(value, spec='.3f'):
    return '-' if value is None else format(value, spec)


def decoding_split(workers):
    """How images are decoded, in words: ``0 decoding workers`` reads as none at all."""
    if not workers:
        return 'decoding in the main process'
    return f'{workers} decoding worker' + ('s' if workers > 1 else '')


def decoding_note(share, workers, cores=None):
    """Advice when the model waited for images, only what helps on this machine: from
    ``CORES_PER_WORKER`` cores, more workers (up to one per core); below, workers take CPU
    time from the model, so --workers 0; and with 0 there, nothing this command can change."""
    cores = cores or cpu_cores()
    if share <= BOTTLENECK_SHARE or (cores < CORES_PER_WORKER and not workers):
        return None
    if cores < CORES_PER_WORKER:
        return (f'note: below {CORES_PER_WORKER} cores decoding workers take CPU time from the '
                f'model; --workers 0 (decoding between batches, the default here) is faster')
    if workers >= cores:
        return None
    more = min(cores, max(2 * workers, default_workers(cores)))
    return f'note: data loading was the bottleneck; raise --workers (now {workers}, try {more})'


def _scores(row, published):
    """The top-1/top-5 lines: beside the published numbers and their delta for the
    registry's weights, alone for others."""
    if published is None:
        return [f'           {"ours":>9}'] + [
            f'  {k[:3]}-{k[3]}    {row[k]:>9.3f}' for k in ('top1', 'top5')]
    return [f'           {"ours":>9} {"published":>10} {"delta":>8}'] + [
        f'  {k[:3]}-{k[3]}    {row[k]:>9.3f} {_fmt(row["published_" + k]):>10} '
        f'{_fmt(row["delta_" + k], "+.3f"):>8}' for k in ('top1', 'top5')]


def _throughput(row, tally, params):
    share = tally.wait_s / tally.wall_s if tally.wall_s else 0.0
    alone = row['model_images_per_sec']
    kept = f' ({100 * row["images_per_sec"] / alone:.0f}%)' if alone else ''
    waiting = 'waiting for images' if row['decode_workers'] else 'decoding'
    lines = [f'  parameters: {params:,} | {row["images_per_sec"]:,.1f} img/s end to end, the '
             f'model alone {alone:,.1f} img/s{kept} | {waiting} {100 * share:.0f}% of the '
             f'time | set-up {row["setup_s"]:g} s']
    note = decoding_note(share, row['decode_workers'])
    return lines + ([f'  {note}'] if note else [])


def format_table(row, tally, published, labels, weights, tolerance, params):
    """The printed report of one model. ``weights``: what was loaded, in words."""
    lines = [f'{row["model"]} ({row["tag"]} weights, {row["engine"]} '
             f'{row.get("precision", "fp32")}: {row["model_threads"]} '
             f'model threads, {row["decode_workers"]} decoding workers, {row["num_images"]:,} '
             f'images, {labels.layout}, {row["img_size"]} px crop {row["crop_pct"]} '
             f'{row["interpolation"]})',
             f'  weights: {weights}',
             f'  labels: {labels.describe()}']
    lines += _scores(row, published)
    if published is not None:
        lines.append(f'  published by: {published.metrics_source or "-"}')
    lines.append(f'  verdict: {row["verdict"]}' +
                 (f' (tolerance {tolerance:g} points)' if row['verdict'] in ('PASS', 'FAIL') else ''))
    lines += _throughput(row, tally, params)
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
    write_text(path, text)

"""``paddle-dla predict`` for the dense models: detections or class shares printed, and
drawn on each image into ``--out-dir`` as a PNG."""
import os

from ..core.atomic import same_file
from ..core.errors import UsageError, printable
from ..inference.engines import EAGER
from ..models.registry import CLASSIFICATION, get_model
from .predict import announcing_engine


def wanted(args):
    """Whether the run is for a dense model: named by --model, or recorded by the export."""
    if args.model:
        return get_model(args.model).task != CLASSIFICATION
    if args.exported:
        from ..inference.exported import read_metadata, resolve_prefix
        try:
            meta = read_metadata(resolve_prefix(args.exported))
        except (OSError, ValueError):
            return False  # the classifier path reports the problem with the files
        return meta.get('task') not in (None, CLASSIFICATION)
    return False


def _runner(args):
    """(spec, run): the exported model, or the --model exported once into the cache (or
    eager)."""
    from ..inference.predictor import Predictor, compile_model
    from ..tasks.serving import DenseSpec, as_named_outputs
    if args.exported:
        if args.engine == EAGER:
            raise UsageError(f'--engine {EAGER} runs a --model, not an --exported one')
        predictor = Predictor(args.exported, device=args.device, precision=args.precision,
                              engine=args.engine)
        return DenseSpec.of_export(predictor.meta), predictor
    from . import common
    model = common.build_model(args)
    model.eval()
    spec = DenseSpec.of_model(model)
    if args.engine == EAGER:
        import paddle

        def run(batch):
            with paddle.no_grad():
                return as_named_outputs(spec, model(paddle.to_tensor(batch)))
        return spec, run
    shape = (None, 3, spec.input.height, spec.input.width)
    return spec, compile_model(model, shape, engine=args.engine, precision=args.precision,
                               device=args.device)


def png_paths(out_dir, images):
    """One PNG per image, named after it (``-2``, ``-3`` .. for repeated names); refused,
    before any work, where one would replace an input image."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f'--out-dir {printable(out_dir)} is a file, not a folder')
    paths, taken = [], set()
    for image in images:
        stem = os.path.splitext(os.path.basename(image))[0] or 'image'
        path, n = os.path.join(out_dir, stem + '.png'), 1
        while path in taken:
            n += 1
            path = os.path.join(out_dir, f'{stem}-{n}.png')
        taken.add(path)
        if any(same_file(path, given) for given in images):
            raise UsageError(f'drawing {printable(image)} into {printable(path)} would '
                             f'replace an input image: choose another --out-dir')
        paths.append(path)
    return paths


def _describe(spec, result, args, threshold):
    import numpy as np
    names = spec.class_names
    if result.classes is not None:
        counts = np.bincount(result.classes.ravel(), minlength=1)
        order = np.argsort(-counts)[:args.topk]
        return [f'  {names[i] if names and i < len(names) else f"class {i}":<20} '
                f'{100 * counts[i] / result.classes.size:6.2f}% of pixels'
                for i in order if counts[i]]
    shown = result.detections.above(threshold)
    lines = [f'  {len(shown)} detections scoring >= {threshold:g}']
    for box, score, label in list(zip(shown.boxes, shown.scores, shown.classes))[:args.topk]:
        name = names[label] if names and label < len(names) else f'class {label}'
        lines.append(f'  {name:<16} {score:.3f}  box {", ".join(f"{v:.1f}" for v in box)}')
    return lines


def run(args):
    from ..tasks.drawing import save_png
    from ..tasks.serving import run_dense
    paths = png_paths(args.out_dir, args.images)
    spec, predict = _runner(args)
    predict = announcing_engine(predict)
    threshold = spec.score_threshold if args.threshold is None else args.threshold
    for image, path in zip(args.images, paths):
        result = run_dense(spec, predict, image)
        save_png(result.drawn(spec.class_names, threshold), path)
        print(printable(image))
        for line in _describe(spec, result, args, threshold):
            print(line)
        print(f'  drawn: {printable(path)}')
    return 0

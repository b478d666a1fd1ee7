"""``paddle-dla predict`` for the dense models: detections or class shares printed, and
drawn on each image into ``--out-dir`` as a PNG."""
import os

from ..core.atomic import same_file
from ..core.errors import UsageError, printable
from ..inference.engines import EAGER, INT8
from ..models.dense_variants import get_dense_config
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


def check_input_size(name, size, keep_res=False):
    """Refuse an --input-size ``(height, width)`` that model ``name`` cannot take, before
    any work."""
    if not size:
        return
    if keep_res:
        raise UsageError('--keep-res runs each image at its own size; --input-size fixes one '
                         'size for all: give one of them')
    if get_dense_config(name).input.native:
        raise UsageError(f'--input-size is the network input of CenterNet and FairMOT; '
                         f'{name} runs each image at its own resolution')
    multiple = get_model(name).input_multiple
    if any(side % multiple for side in size):
        raise UsageError(f'--input-size {size[1]}x{size[0]}: {name} needs multiples of '
                         f'{multiple}')


def runner(args, calibration_files=None):
    """(spec, run): the exported model, or the --model exported once into the cache (any
    input size with --keep-res), or eager. ``--precision int8`` on a --model quantizes it
    once, calibrated on ``calibration_files`` read by the spec's recipe."""
    from ..inference.predictor import Predictor, compile_model
    from ..tasks.serving import DenseSpec, as_named_outputs
    size = getattr(args, 'input_size', None)  # (height, width)
    if args.exported:
        if args.engine == EAGER:
            raise UsageError(f'--engine {EAGER} runs a --model, not an --exported one')
        if size:
            raise UsageError(f'--input-size is for a --model; {printable(args.exported)} runs '
                             f'at the size it was exported at')
        predictor = Predictor(args.exported, device=args.device, precision=args.precision,
                              engine=args.engine)
        shape = predictor.meta.get('input_shape') or [None] * 4
        if args.keep_res and any(d is not None for d in shape[2:]):
            raise UsageError(f'--keep-res runs each image at its own size; '
                             f'{printable(args.exported)} takes only '
                             f'{shape[2]}x{shape[3]}: export it with --dynamic')
        return DenseSpec.of_export(predictor.meta).fixed_to(shape), predictor
    from . import common
    check_input_size(args.model, size, args.keep_res)
    model = common.build_model(args)
    model.eval()
    spec = DenseSpec.of_model(model, *(size or ()))
    if args.engine == EAGER:
        import paddle

        def run(batch):
            with paddle.no_grad():
                return as_named_outputs(spec, model(paddle.to_tensor(batch)))
        return spec, run
    spatial = ((None, None) if args.keep_res or spec.input.native else
               (spec.input.height, spec.input.width))
    calibration = None
    if args.precision == INT8:
        from ..tasks.serving import prepare
        from .quantize import calibration_inputs
        if not calibration_files:
            raise UsageError(f'--precision {INT8} on --model {args.model} needs calibration '
                             f'images: quantize it with paddle-dla quantize and give --exported')
        calibration = calibration_inputs(
            calibration_files, lambda path: prepare(spec, path, keep_res=args.keep_res)[0])
    return spec, compile_model(model, (None, 3, *spatial), engine=args.engine,
                               precision=args.precision, device=args.device,
                               calibration=calibration)


def _check_modes(spec, args):
    """CenterNet's test modes and COCO results are for detection; refused otherwise, before
    any image is read."""
    asked = [f'--{o.replace("_", "-")}' for o in ('flip_test', 'keep_res', 'save_json')
             if getattr(args, o, None)]
    if not asked:
        return
    if spec.is_segmentation:
        raise UsageError(f'{" and ".join(asked)}: for detection models, not segmentation')
    if (args.flip_test or args.keep_res) and spec.input.resize != 'affine':
        raise UsageError(f'--flip-test and --keep-res are CenterNet\'s test modes; this '
                         f'{spec.task} model\'s input is a {spec.input.resize}')


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
    from ..core.atomic import write_json
    from ..tasks.coco import category_ids_of, coco_records, image_ids_of
    from ..tasks.drawing import save_png
    from ..tasks.serving import run_dense
    paths = png_paths(args.out_dir, args.images)
    spec, predict = runner(args)
    _check_modes(spec, args)
    predict = announcing_engine(predict)
    threshold = spec.score_threshold if args.threshold is None else args.threshold
    records = [] if args.save_json else None
    if records is not None:
        json_threshold = 0.0 if args.threshold is None else args.threshold
        categories = category_ids_of(spec.class_names, _num_classes(spec))
    for image, path, image_id in zip(args.images, paths, image_ids_of(args.images)):
        result = run_dense(spec, predict, image, flip_test=args.flip_test,
                           keep_res=args.keep_res)
        save_png(result.drawn(spec.class_names, threshold), path)
        print(printable(image))
        for line in _describe(spec, result, args, threshold):
            print(line)
        print(f'  drawn: {printable(path)}')
        if records is not None:
            records += coco_records(result.detections, image_id, categories, json_threshold,
                                    file_name=image)
    if records is not None:
        write_json(args.save_json, records, indent=None)
        print(f'results: {printable(args.save_json)} ({len(records)} detections, COCO '
              f'results format)')
    return 0


def _num_classes(spec):
    """The class count of a detector whose export records no class names."""
    return len(spec.class_names) if spec.class_names else None

"""``paddle-dla predict``: the top classes of images, from an exported model (the recorded
preprocessing and class names) or an eager one."""
import argparse

from ..core.errors import UsageError
from ..inference.engines import AUTO, DEVICE_PATTERN, EAGER, ENGINES, PRECISIONS, RUN_CHOICES
from ..models.dense_variants import DENSE_VARIANTS
from ..models.imagenet import NUM_CLASSES
from . import common
from .args import float_range, output_file, positive_int

HELP = 'classify images (top-k classes), or detect / segment them with a dense model'
DESCRIPTION = ('Classify images with an exported model (with the preprocessing and class names '
               'its export recorded) or a variant and its weights, run by the fastest engine '
               'installed here (or the one named), or eagerly. A dense model (CenterNet, '
               'FairMOT, DLA-Up) prints its detections or class shares and draws them on '
               'each image, written as a PNG into --out-dir.')
EPILOG = common.DEPLOY_EXAMPLES + """\
  # dense models: a converted CenterNet checkpoint, detections drawn into predictions/
  paddle-dla predict street.jpg --model centernet_dla34 --weights ctdet_coco_dla_2x.pth
  paddle-dla export --model dla34up --weights dla34up.pdparams --out seg/
  paddle-dla predict street.jpg --exported seg/ --out-dir masks/
"""


unit_float = float_range(0.0, 1.0, what='a score between 0 and 1')


def device(text):
    """An argparse type: ``cpu``, ``gpu`` or ``gpu:N``."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f'{text!r} is not a device: use cpu, gpu or gpu:N')
    return text


def add_engine_options(p):
    """--engine, --device and --precision: how a model runs, for every command that runs one
    on images or frames."""
    p.add_argument('--engine', choices=RUN_CHOICES, default=AUTO,
                   help=f'{AUTO}: the fastest installed engine, measured on first use and '
                        f'remembered; {", ".join(ENGINES)}: that one; {EAGER}: the Paddle '
                        f'model itself, with --model (default: %(default)s)')
    p.add_argument('--device', type=device, default='cpu',
                   help='cpu, gpu or gpu:N (default: %(default)s)')
    p.add_argument('--precision', choices=PRECISIONS,
                   help='fp32, bf16 (CPUs with AVX512-BF16 or AMX), fp16 (GPU) or int8 (an '
                        'export made by paddle-dla quantize, on CPU) (default: int8 for such '
                        'an export, fp32 otherwise)')


def configure(p):
    p.add_argument('images', nargs='+', help='image files')
    common.add_model_options(p, positive_int, required=False)
    p.add_argument('--exported', metavar='PATH',
                   help='exported model folder or prefix (default: none, --model with its '
                        'weights, exported once into the cache)')
    add_engine_options(p)
    p.add_argument('--topk', type=positive_int, default=5, metavar='K',
                   help='classes shown per image (default: %(default)s); for detection, '
                        'the most detections listed per image')
    p.add_argument('--out-dir', metavar='DIR', default='predictions',
                   help='dense models: where the drawn PNGs go, one per image named after it '
                        '(default: %(default)s)')
    p.add_argument('--threshold', type=unit_float, metavar='SCORE',
                   help='detection: the lowest score listed and drawn (default: the model\'s, '
                        + ', '.join(f'{c.score_threshold:g} for {c.name}'
                                    for c in DENSE_VARIANTS.values() if c.is_centernet) + '); '
                        'with --save-json, the lowest score written (0 writes all K)')
    common.add_centernet_modes(p, '; needs --model, or an export made with --dynamic')
    common.add_input_size(p)
    p.add_argument('--save-json', metavar='FILE', type=output_file,
                   help='detection: write every image\'s detections as COCO results '
                        '(file_name, image_id, category_id, bbox [x, y, w, h] in the image\'s '
                        'pixels, score), written whole once every image is done (default: none)')


def softmax(logits):
    import numpy as np
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted.astype(np.float64))
    return e / e.sum(axis=1, keepdims=True)


def exported_runner(args):
    """(recipe, class names or None, run) for an exported model: what the export recorded;
    an export without that record needs --model to say what it is."""
    from ..inference.predictor import Predictor, recipe_of
    from ..weights.registry import get_weights
    if args.engine == EAGER:
        raise UsageError(f'--engine {EAGER} runs a --model, not an --exported one: choose '
                         f'{", ".join((AUTO,) + ENGINES)}')
    predictor = Predictor(args.exported, device=args.device, precision=args.precision,
                          engine=args.engine)
    meta = predictor.meta
    recipe = recipe_of(meta)
    if recipe is None:
        variant = meta.get('variant') or args.model
        if not variant:
            raise UsageError(f'{args.exported} records no preprocessing (exported without '
                             f'paddle-dla export): give --model NAME to say what it is')
        recipe = get_weights(variant).preprocessing
    return recipe, meta.get('class_names'), predictor


def model_runner(args):
    """(recipe, None, run) for a model built from --model and --weights/--tag: exported once
    into the cache at its recipe's size and run by --engine, or eager."""
    from ..inference.eager import eager_predictor
    from ..inference.predictor import compile_model
    from ..weights.registry import get_weights
    if not args.model:
        raise UsageError('give --model NAME or --exported DIR')
    model = common.build_model(args)
    model.eval()
    recipe = get_weights(model.config.name).preprocessing
    if args.engine == EAGER:
        return recipe, None, eager_predictor(model)
    size = recipe.img_size
    return recipe, None, compile_model(model, (None, model.in_chans, size, size),
                                       engine=args.engine, precision=args.precision,
                                       device=args.device)


def announcing_engine(predict):
    """``predict`` that prints, before its first answer, the engine line that opens the
    report: with 'auto' the engine is known only once the first image has been run."""
    from ..inference.predictor import describe_engine
    announced = []

    def run(batch):
        out = predict(batch)
        if not announced:
            announced.append(True)
            print(f'engine: {describe_engine(predict)}')
        return out
    return run


def default_class_names(count):
    """ImageNet's names for a 1000-way output, numbers otherwise (fine-tuned models)."""
    from ..models.imagenet import class_names
    return class_names() if count == NUM_CLASSES else [f'class {i}' for i in range(count)]


def run(args):
    import numpy as np

    from ..evaluation.transforms import Preprocess
    from . import predict_dense
    if predict_dense.wanted(args):
        return predict_dense.run(args)
    for option in ('flip_test', 'keep_res', 'save_json', 'input_size'):
        if getattr(args, option):
            raise UsageError(f'--{option.replace("_", "-")} is for detection models, not '
                             f'classifiers')
    recipe, names, predict = (exported_runner if args.exported else model_runner)(args)
    predict = announcing_engine(predict)
    preprocess = Preprocess.of(recipe)
    for path in args.images:
        probs = softmax(predict(preprocess(path)[None]))[0]
        shown = names if names and len(names) == len(probs) else default_class_names(len(probs))
        print(path)
        for rank, index in enumerate(np.argsort(-probs)[:args.topk], 1):
            print(f'  {rank}. {shown[index]:<32} {100 * probs[index]:6.2f}%')
    return 0

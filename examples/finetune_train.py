"""The training half of ``examples/finetune.py``, loaded once its options are parsed (so
that ``--help`` answers at once)."""
import json
import os
import random
import sys

import numpy as np
from PIL import Image  # before Paddle: Paddle 2.6 ships its own zlib

import paddle
import paddle.nn.functional as F
from paddle.vision import transforms as T

import paddle_dla
from paddle_dla.core.atomic import atomic_output
from paddle_dla.weights.checkpoint import load_pdparams, read_paddle_pickle, save_pdparams
from paddle_dla.core.errors import CheckpointReadError, PaddleDLAError, printable
from paddle_dla.evaluation.dataset import IMAGE_SUFFIXES
from paddle_dla.evaluation.metrics import distributed_rank, topk_hits
from paddle_dla.evaluation.transforms import Preprocess
from paddle_dla import load_pretrained
from paddle_dla.weights.registry import get_weights


class FinetuneError(PaddleDLAError):
    """Input this script cannot train on; the message says which and why."""


def class_folders(root):
    if not os.path.isdir(root):
        raise FinetuneError(f'no data folder {printable(root)}')
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    samples = [(os.path.join(root, c, f), i) for i, c in enumerate(classes)
               for f in sorted(os.listdir(os.path.join(root, c)))
               if f.lower().endswith(IMAGE_SUFFIXES)]
    return classes, samples


def splits(data_dir, val_split, seed):
    """(classes, train samples, val samples) from train/ + val/ folders or one folder."""
    train_dir, val_dir = os.path.join(data_dir, 'train'), os.path.join(data_dir, 'val')
    if os.path.isdir(train_dir) and os.path.isdir(val_dir):
        classes, train = class_folders(train_dir)
        val_classes, val = class_folders(val_dir)
        if val_classes != classes:
            raise FinetuneError(f'train/ and val/ have different classes in '
                                f'{printable(data_dir)}')
        return classes, train, val
    classes, samples = class_folders(data_dir)
    random.Random(seed).shuffle(samples)
    n_val = max(1, int(round(len(samples) * val_split)))
    return classes, samples[n_val:], samples[:n_val]


class ImageFolder(paddle.io.Dataset):
    """Labelled images. One that cannot be read comes back as a blank image labelled
    ``-1 - index``, for :meth:`check_labels` to report: an exception inside Paddle's loader
    stops its thread and hangs the training (``--workers 0``), or prints the worker's
    traceback (``--workers N``)."""

    def __init__(self, samples, transform, img_size):
        super().__init__()
        self.samples, self.transform = samples, transform
        self.blank = np.zeros((3, img_size, img_size), np.float32)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        try:
            return self.transform(path), np.int64(label)
        except Exception:  # noqa: BLE001 - reported from the main process
            return self.blank, np.int64(-1 - i)

    def check_labels(self, labels):
        """Raise, naming the file, if a batch holds an image that could not be read."""
        unread = labels[labels < 0]
        if unread.size:
            path = self.samples[int(-1 - unread[0])][0]
            try:
                self.transform(path)
            except Exception as exc:  # noqa: BLE001 - reported as one line
                why = str(exc)
                raise FinetuneError(why if path in why else f'cannot read {printable(path)}: '
                                                            f'{why}') from None
            raise FinetuneError(f'cannot read {printable(path)}')


def train_transform(recipe):
    """Random crops and flips, normalised as the pretrained weights expect."""
    augment = T.Compose([T.RandomResizedCrop(recipe.img_size), T.RandomHorizontalFlip(),
                         T.ToTensor(), T.Normalize(recipe.mean, recipe.std)])

    def load(path):
        try:
            with open(path, 'rb') as f:
                image = Image.open(f).convert('RGB')
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise FinetuneError(f'cannot decode {printable(path)}: {exc}') from None
        return augment(image).numpy()
    return load


def evaluate(model, loader):
    model.eval()
    correct1 = correct5 = total = 0
    with paddle.no_grad():
        for images, labels in loader:
            labels = labels.numpy().reshape(-1)
            loader.dataset.check_labels(labels)
            logits = model(images).numpy()
            correct1 += topk_hits(logits, labels, 1)
            correct5 += topk_hits(logits, labels, 5)
            total += len(labels)
    model.train()
    return 100.0 * correct1 / max(total, 1), 100.0 * correct5 / max(total, 1)


def save_checkpoint(prefix, model, optimizer, state):
    """Weights, optimizer state and progress, each file written atomically."""
    save_pdparams(model.state_dict(), prefix + '.pdparams')
    with atomic_output(prefix + '.pdopt') as tmp:
        paddle.save(optimizer.state_dict(), tmp)
    with atomic_output(prefix + '.json') as tmp, open(tmp, 'w') as f:
        json.dump(state, f, indent=2)


def read_optimizer_state(path, optimizer, trainable):
    """The optimizer state saved in ``path``, read without running code from the file and
    checked against this optimizer: a state that does not fit would otherwise fail only at
    the first step, with a message naming neither the file nor the cause."""
    state = read_paddle_pickle(path)
    shown = printable(path)
    if not isinstance(state, dict):
        raise CheckpointReadError(f'{shown} does not hold optimizer state (found '
                                  f'{type(state).__name__})')
    _check_schedule_state(state.get('LR_Scheduler'), optimizer, shown)
    for param in trainable:
        key = f'{param.name}_velocity_0'  # how Momentum names its accumulator
        value = state.get(key)
        if not isinstance(value, np.ndarray) or list(value.shape) != list(param.shape):
            found = 'missing' if value is None else f'found {list(np.shape(value))}'
            raise CheckpointReadError(f'{shown} does not fit this model and optimizer: '
                                      f'{key} should have shape {list(param.shape)}, {found}')
        state[key] = value.astype(str(param.dtype).replace('paddle.', ''), copy=False)
    return state


def _check_schedule_state(value, optimizer, shown):
    expected = set(optimizer.state_dict().get('LR_Scheduler', {}))
    if not isinstance(value, dict) or not expected <= set(value) or not all(
            isinstance(value[k], (int, float)) and not isinstance(value[k], bool)
            and np.isfinite(value[k]) for k in expected):
        raise CheckpointReadError(f'{shown} does not hold this learning rate schedule\'s '
                                  f'state (expected numbers for {", ".join(sorted(expected))})')


def read_progress(path, classes):
    """Epoch, best accuracy and history from a checkpoint's ``.json``, checked."""
    shown = printable(path)
    try:
        with open(path, encoding='utf-8') as f:
            state = json.load(f)
    except (ValueError, RecursionError) as exc:
        raise FinetuneError(f'{shown} is corrupt: not valid JSON ({exc})') from None
    fields = {'epoch': int, 'best_top1': (int, float), 'classes': list, 'history': list}
    if not isinstance(state, dict) or any(
            not isinstance(state.get(k), t) or isinstance(state.get(k), bool)
            for k, t in fields.items()) or state['epoch'] < 0:
        raise FinetuneError(f'{shown} is corrupt: expected an object with '
                            f'{", ".join(fields)} as finetune.py writes it')
    if state['classes'] != classes:
        raise FinetuneError(f'{shown}: the checkpoint was trained on other classes '
                            f'({len(state["classes"])}) than the data folder holds '
                            f'({len(classes)})')
    return state


def resume(prefix, model, optimizer, trainable, classes):
    """Continue from ``prefix``.pdparams/.pdopt/.json; every file is read safely and checked
    before anything is changed."""
    paths = [prefix + suffix for suffix in ('.pdparams', '.pdopt', '.json')]
    for path in paths:
        if not os.path.isfile(path):
            raise FinetuneError(f'cannot resume: no {printable(path)} (--resume takes a '
                                f'checkpoint prefix such as runs/x/last)')
    weights = load_pdparams(paths[0])
    opt_state = read_optimizer_state(paths[1], optimizer, trainable)
    state = read_progress(paths[2], classes)
    paddle_dla.load_state_dict_strict(model, weights, context=f'{printable(paths[0])} does '
                                      f'not fit {model.config.name} with {len(classes)} '
                                      f'classes')
    optimizer.set_state_dict(opt_state)
    return state


def build_model(args, classes):
    """The model to fine-tune: pretrained backbone, fresh head for ``classes``."""
    # The same parameters in the same order on every run, so a resumed optimizer state fits.
    with paddle.utils.unique_name.guard():
        model = paddle_dla.create_model(args.model, num_classes=len(classes))
        model.reset_classifier(len(classes))  # a head initialised for fine-tuning
    if not (args.resume or args.no_pretrained):  # everything but the pretrained classifier
        load_pretrained(model, args.weights or True, skip_classifier=True)
    if args.freeze_backbone:
        for name, param in model.named_parameters():
            param.stop_gradient = not name.startswith('fc.')
    return model


def train_epoch(net, loader, optimizer, schedule, scaler, use_amp, progress):
    """One pass over ``loader``; returns the step losses."""
    losses = []
    for images, labels in loader:
        loader.dataset.check_labels(labels.numpy())
        with paddle.amp.auto_cast(enable=use_amp):
            loss = F.cross_entropy(net(images), labels.reshape([-1]))
        if scaler:
            scaler.scale(loss).backward()
            scaler.minimize(optimizer, loss)
        else:
            loss.backward()
            optimizer.step()
        optimizer.clear_grad()
        schedule.step()
        losses.append(float(loss))
        progress.update(1)
        progress.set_postfix(loss=f'{losses[-1]:.4f}', lr=f'{schedule.get_lr():.2e}')
    return losses


def seed_everything(seed):
    paddle.seed(seed)
    random.seed(seed)  # the augmentations draw from Python's and NumPy's generators
    np.random.seed(seed)


def data_loaders(args, model_name):
    """(classes, train sampler, train loader, val loader) from the class folders."""
    classes, train, val = splits(args.data_dir, args.val_split, args.seed)
    if not train or not val:
        raise FinetuneError(f'need training and validation images in '
                            f'{printable(args.data_dir)} (class folders of '
                            f'{", ".join(IMAGE_SUFFIXES)} files)')
    recipe = get_weights(model_name).preprocessing.with_overrides(img_size=args.img_size)
    train_set = ImageFolder(train, train_transform(recipe), args.img_size)
    val_set = ImageFolder(val, Preprocess.of(recipe), args.img_size)
    sampler = paddle.io.DistributedBatchSampler(train_set, args.batch_size, shuffle=True,
                                                drop_last=len(train) > args.batch_size)
    train_loader = paddle.io.DataLoader(train_set, batch_sampler=sampler,
                                        num_workers=args.workers)
    val_loader = paddle.io.DataLoader(val_set, batch_size=args.batch_size,
                                      num_workers=args.workers)
    return classes, sampler, train_loader, val_loader


def build_optimizer(args, trainable, steps):
    schedule = paddle.optimizer.lr.CosineAnnealingDecay(args.lr, T_max=steps)
    optimizer = paddle.optimizer.Momentum(schedule, momentum=0.9, parameters=trainable,
                                          weight_decay=args.weight_decay)
    return schedule, optimizer


def record_epoch(args, model, optimizer, state, epoch, losses, scores):
    """Add the epoch to the history; rank 0 reports it and saves best and last."""
    top1, top5 = scores
    state['epoch'] = epoch
    state['history'].append({'epoch': epoch, 'train_loss': float(np.mean(losses)),
                             'step_losses': losses, 'val_top1': top1, 'val_top5': top5})
    if distributed_rank()[0] != 0:
        return
    print(f'epoch {epoch}: train loss {np.mean(losses):.4f}, val top-1 {top1:.2f}, '
          f'top-5 {top5:.2f}', flush=True)
    if top1 > state['best_top1']:
        state['best_top1'] = top1
        save_pdparams(model.state_dict(), os.path.join(args.output, 'best.pdparams'))
    save_checkpoint(os.path.join(args.output, 'last'), model, optimizer, state)


def run(args):
    """Train as ``args`` say; raises on input it cannot use (``main`` reports it)."""
    seed_everything(args.seed)
    rank, world = distributed_rank()
    classes, sampler, train_loader, val_loader = data_loaders(args, args.model)
    model = build_model(args, classes)
    trainable = [p for p in model.parameters() if not p.stop_gradient]
    schedule, optimizer = build_optimizer(args, trainable,
                                          max(1, len(train_loader)) * args.epochs)
    state = {'epoch': 0, 'best_top1': -1.0, 'classes': classes, 'model': model.config.name,
             'history': []}
    if args.resume:
        state = resume(args.resume, model, optimizer, trainable, classes)
        print(f'resuming from {args.resume} after epoch {state["epoch"]}', flush=True)
    net = paddle.DataParallel(model) if world > 1 else model
    use_amp = args.amp or paddle.device.get_device().startswith('gpu')
    scaler = paddle.amp.GradScaler() if use_amp else None
    os.makedirs(args.output, exist_ok=True)

    from tqdm import tqdm
    for epoch in range(state['epoch'] + 1, args.epochs + 1):
        model.train()
        sampler.set_epoch(epoch)
        with tqdm(total=len(train_loader), desc=f'epoch {epoch}/{args.epochs}',
                  file=sys.stderr, disable=rank != 0) as progress:
            losses = train_epoch(net, train_loader, optimizer, schedule, scaler, use_amp,
                                 progress)
        record_epoch(args, model, optimizer, state, epoch, losses, evaluate(model, val_loader))
    if rank == 0:
        print(f'done: best val top-1 {state["best_top1"]:.2f}; weights in {args.output}/'
              f'best.pdparams (load with paddle_dla.create_model({model.config.name!r}, '
              f'pretrained=..., num_classes={len(classes)}))')
    return 0


def _cause(exc):
    """A DataLoader worker's failure carries the worker's whole traceback as its message:
    keep the last line, which says what went wrong."""
    text = str(exc)
    if text.startswith('DataLoader worker(') and 'Traceback' in text:
        return [line.strip() for line in text.splitlines() if line.strip()][-1]
    return exc


def _with_cause(run, args):
    """Data loader failures arrive wrapped in the worker's traceback: keep the cause."""
    try:
        return run(args)
    except Exception as exc:  # noqa: BLE001 - re-raised with its last line only
        if args.debug:
            raise
        cause = _cause(exc)
        if cause is exc:
            raise
        raise FinetuneError(cause) from None



def train(args):
    """Train as ``args`` say (see ``finetune.py --help``)."""
    return _with_cause(run, args)

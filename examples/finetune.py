#!/usr/bin/env python
"""Fine-tune a (pretrained) DLA on your own folder of images.

    data/train/<class>/*.jpg and data/val/<class>/*.jpg     (or one folder and --val-split)

    python examples/finetune.py --model dla_34 --data-dir data --epochs 10 --output runs/pets
    python examples/finetune.py ... --resume runs/pets/last        # continue where it stopped
    python -m paddle.distributed.launch --nproc_per_node 4 examples/finetune.py ...

The pretrained classifier is replaced by one with your number of classes. Each epoch
reports top-1/top-5 on the validation split and writes ``last.*`` (and ``best.*``) to
--output; the weights are a plain ``.pdparams`` that ``create_model(..., pretrained=path,
num_classes=N)`` loads.
"""
import argparse
import json
import os
import random
import sys

import numpy as np

try:
    import paddle_dla  # noqa: F401
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402
from paddle.vision import transforms as T  # noqa: E402
from PIL import Image  # noqa: E402

import paddle_dla  # noqa: E402
from paddle_dla.atomic import atomic_output  # noqa: E402
from paddle_dla.checkpoint import save_pdparams  # noqa: E402
from paddle_dla.evaluation.dataset import IMAGE_SUFFIXES  # noqa: E402
from paddle_dla.evaluation.transforms import Preprocess  # noqa: E402
from paddle_dla.factory import load_pretrained  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def class_folders(root):
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
            raise SystemExit(f'error: train/ and val/ have different classes in {data_dir}')
        return classes, train, val
    classes, samples = class_folders(data_dir)
    random.Random(seed).shuffle(samples)
    n_val = max(1, int(round(len(samples) * val_split)))
    return classes, samples[n_val:], samples[:n_val]


class ImageFolder(paddle.io.Dataset):
    def __init__(self, samples, transform):
        super().__init__()
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        return self.transform(path), np.int64(label)


def train_transform(img_size):
    augment = T.Compose([T.RandomResizedCrop(img_size), T.RandomHorizontalFlip(),
                         T.ToTensor(), T.Normalize(MEAN, STD)])

    def load(path):
        with open(path, 'rb') as f:
            return augment(Image.open(f).convert('RGB')).numpy()
    return load


def evaluate(model, loader, num_classes):
    model.eval()
    correct1 = correct5 = total = 0
    k = min(5, num_classes)
    with paddle.no_grad():
        for images, labels in loader:
            logits = model(images).numpy()
            labels = labels.numpy().reshape(-1)
            topk = np.argsort(-logits, axis=1)[:, :k]
            correct1 += int((topk[:, 0] == labels).sum())
            correct5 += int((topk == labels[:, None]).any(axis=1).sum())
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='dla_34')
    p.add_argument('--data-dir', required=True)
    p.add_argument('--val-split', type=float, default=0.2,
                   help='share held out when there are no train/ and val/ folders')
    p.add_argument('--weights', help='start from this .pdparams/.pth file instead of the '
                                     'published weights')
    p.add_argument('--no-pretrained', action='store_true', help='start from random weights')
    p.add_argument('--freeze-backbone', action='store_true', help='train the classifier only')
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--lr', type=float, default=0.01, help='peak learning rate (cosine decay)')
    p.add_argument('--weight-decay', type=float, default=1e-4)
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--output', default='runs/finetune')
    p.add_argument('--resume', help='checkpoint prefix to continue from (e.g. runs/x/last)')
    p.add_argument('--amp', action='store_true', help='mixed precision (default on GPU)')
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    paddle.seed(args.seed)
    random.seed(args.seed)  # the augmentations draw from Python's and NumPy's generators
    np.random.seed(args.seed)
    world = int(os.environ.get('PADDLE_TRAINERS_NUM', '1'))
    if world > 1:
        paddle.distributed.init_parallel_env()
    rank = paddle.distributed.get_rank() if world > 1 else 0

    classes, train, val = splits(args.data_dir, args.val_split, args.seed)
    if not train or not val:
        raise SystemExit(f'error: need training and validation images in {args.data_dir}')
    # The same parameters in the same order on every run, so a resumed optimizer state fits.
    with paddle.utils.unique_name.guard():
        model = paddle_dla.create_model(args.model, num_classes=len(classes))
        model.reset_classifier(len(classes))  # a head initialised for fine-tuning
    if not (args.resume or args.no_pretrained):  # everything but the pretrained classifier
        load_pretrained(model, args.weights or True, skip_classifier=True)
    if args.freeze_backbone:
        for name, param in model.named_parameters():
            param.stop_gradient = not name.startswith('fc.')
    trainable = [p for p in model.parameters() if not p.stop_gradient]

    train_set = ImageFolder(train, train_transform(args.img_size))
    val_set = ImageFolder(val, Preprocess(img_size=args.img_size))
    sampler = paddle.io.DistributedBatchSampler(train_set, args.batch_size, shuffle=True,
                                                drop_last=len(train) > args.batch_size)
    train_loader = paddle.io.DataLoader(train_set, batch_sampler=sampler,
                                        num_workers=args.workers)
    val_loader = paddle.io.DataLoader(val_set, batch_size=args.batch_size,
                                      num_workers=args.workers)
    steps = max(1, len(train_loader)) * args.epochs
    schedule = paddle.optimizer.lr.CosineAnnealingDecay(args.lr, T_max=steps)
    optimizer = paddle.optimizer.Momentum(schedule, momentum=0.9, parameters=trainable,
                                          weight_decay=args.weight_decay)
    state = {'epoch': 0, 'best_top1': -1.0, 'classes': classes, 'model': model.config.name,
             'history': []}
    if args.resume:
        paddle_dla.load_state_dict_strict(model, paddle.load(args.resume + '.pdparams'))
        optimizer.set_state_dict(paddle.load(args.resume + '.pdopt'))
        with open(args.resume + '.json') as f:
            state = json.load(f)
        if state['classes'] != classes:
            raise SystemExit('error: the checkpoint was trained on other classes')
        print(f'resuming from {args.resume} after epoch {state["epoch"]}', flush=True)
    net = paddle.DataParallel(model) if world > 1 else model
    use_amp = args.amp or paddle.device.get_device().startswith('gpu')
    scaler = paddle.amp.GradScaler() if use_amp else None
    os.makedirs(args.output, exist_ok=True)

    for epoch in range(state['epoch'] + 1, args.epochs + 1):
        model.train()
        sampler.set_epoch(epoch)
        losses = []
        bar = None
        if rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=len(train_loader), desc=f'epoch {epoch}/{args.epochs}',
                       file=sys.stderr)
        for images, labels in train_loader:
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
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f'{losses[-1]:.4f}', lr=f'{schedule.get_lr():.2e}')
        if bar:
            bar.close()
        top1, top5 = evaluate(model, val_loader, len(classes))
        state['epoch'] = epoch
        state['history'].append({'epoch': epoch, 'train_loss': float(np.mean(losses)),
                                 'step_losses': losses, 'val_top1': top1, 'val_top5': top5})
        if rank == 0:
            print(f'epoch {epoch}: train loss {np.mean(losses):.4f}, val top-1 {top1:.2f}, '
                  f'top-5 {top5:.2f}', flush=True)
            if top1 > state['best_top1']:
                state['best_top1'] = top1
                save_pdparams(model.state_dict(), os.path.join(args.output, 'best.pdparams'))
            save_checkpoint(os.path.join(args.output, 'last'), model, optimizer, state)
    if rank == 0:
        print(f'done: best val top-1 {state["best_top1"]:.2f}; weights in {args.output}/'
              f'best.pdparams (load with paddle_dla.create_model({model.config.name!r}, '
              f'pretrained=..., num_classes={len(classes)}))')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""A small ILSVRC-style validation set made from real photographs (scikit-image's samples)
plus the awkward cases, labelled from the reference pipeline's own ranking.

Each image gets the class the reference (timm model + torchvision transforms) ranks 1st,
3rd or 8th, so the expected top-1 and top-5 are known exactly. Ranks whose neighbours are
too close to call are avoided, so float32 noise cannot flip an outcome.
"""
import os
import shutil

import skimage
import torch
from PIL import Image
from torchvision import transforms as T

from paddle_dla.models.imagenet import synsets
from helpers import pick_label
from oracle import oracle

PHOTOS = ['astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.jpg', 'motorcycle_left.png',
          'motorcycle_right.png', 'hubble_deep_field.jpg', 'retina.jpg', 'ihc.png', 'logo.png',
          'immunohistochemistry.png', 'color.png', 'brick.png', 'grass.png']
TARGET_RANKS = (1, 3, 8)


def reference_transform():
    return T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BILINEAR),
                      T.CenterCrop(224), T.ToTensor(),
                      T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])


def _write_images(folder):
    """ILSVRC-named files: real JPEG photos and the special cases. Returns their paths."""
    source = skimage.data_dir
    photos = [p for p in PHOTOS if os.path.exists(os.path.join(source, p))]
    images = [Image.open(os.path.join(source, p)).convert('RGB') for p in photos]
    paths = []

    def name():
        return os.path.join(folder, f'ILSVRC2012_val_{len(paths) + 1:08d}.JPEG')

    for image in images:
        paths.append(name())
        image.save(paths[-1], format='JPEG', quality=90)
    cases = [
        (Image.open(os.path.join(source, 'camera.png')).convert('L'), 'JPEG'),   # grayscale
        (images[1].convert('CMYK'), 'JPEG'),                                      # CMYK
        (images[2], 'PNG'),                                                       # PNG named .JPEG
        (images[3].resize((7, 5)), 'JPEG'),                                       # tiny
        (images[0].resize((1600, 120)), 'JPEG'),                                  # panoramic
        (images[4].resize((90, 700)), 'JPEG'),                                    # very tall
    ]
    for image, fmt in cases:
        paths.append(name())
        image.save(paths[-1], format=fmt)
    return paths


def build(root, variant):
    """Make the set under ``root`` in three layouts. Returns a description dict."""
    flat = os.path.join(root, 'flat')
    os.makedirs(flat)
    paths = _write_images(flat)
    model = oracle(variant, dtype=torch.float32)
    transform = reference_transform()
    labels, ranks, kept = [], [], []
    for i, path in enumerate(paths):
        with torch.no_grad():
            logits = model(transform(Image.open(path).convert('RGB'))[None]).numpy()[0]
        # Rotate the preferred rank so that hits and misses both occur.
        preferred = TARGET_RANKS[i % 3:] + TARGET_RANKS[:i % 3]
        picked = pick_label(logits, preferred)
        if picked is None:
            os.remove(path)
            continue
        kept.append(path)
        labels.append(picked[0])
        ranks.append(picked[1])
    names = [os.path.basename(p) for p in kept]
    with open(os.path.join(root, 'val_list.txt'), 'w') as f:
        f.writelines(f'val/{n} {l}\n' for n, l in zip(names, labels))
    with open(os.path.join(root, 'LOC_val_solution.csv'), 'w') as f:
        f.write('ImageId,PredictionString\n')
        f.writelines(f'{n[:-5]},{synsets()[l]} 10 20 200 220 \n' for n, l in zip(names, labels))
    by_synset = os.path.join(root, 'synsets')
    for path, label in zip(kept, labels):
        os.makedirs(os.path.join(by_synset, synsets()[label]), exist_ok=True)
        shutil.copy(path, os.path.join(by_synset, synsets()[label], os.path.basename(path)))
    return dict(flat=flat, list_file=os.path.join(root, 'val_list.txt'),
                kaggle=os.path.join(root, 'LOC_val_solution.csv'), synsets=by_synset,
                paths=kept, labels=labels, ranks=ranks,
                top1=sum(r == 1 for r in ranks), top5=sum(r <= 5 for r in ranks))


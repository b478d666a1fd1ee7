"""Pictures of what the dense networks found, with Pillow and NumPy only: boxes with
"name score" labels, class maps blended over the image, and PNG files written atomically."""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core.atomic import atomic_output
from ..models.dense_variants import DEFAULT_SCORE_THRESHOLD
from .inputs import class_map_to_image, read_image

# Cityscapes' 19 training classes, road to bicycle, in the colours of its own tools.
CITYSCAPES_PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32)], np.uint8)


def label_palette(count):
    """``count`` distinct colours, the same on every run: PASCAL VOC's palette (the bits of
    the index spread over R, G and B), whose colour 0 is black."""
    index = np.arange(count)
    colours = np.zeros((count, 3), np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            colours[:, channel] |= bit << (7 - shift)
    return colours.astype(np.uint8)


def class_colour(label):
    """A detection class's colour: VOC's palette from its second entry (never black)."""
    return tuple(int(v) for v in label_palette(int(label) + 2)[int(label) + 1])


def draw_detections(image, detections, class_names=None, threshold=DEFAULT_SCORE_THRESHOLD):
    """A new RGB image with the boxes of ``detections`` (in this image's pixels) scoring at
    least ``threshold``, each labelled "name score" in its class's colour. Boxes are
    clipped to the image here, for drawing only (results keep the decoded boxes)."""
    canvas = read_image(image).copy()
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    width = max(1, round(min(canvas.size) / 300))
    shown = detections.above(threshold)
    for box, score, label in zip(shown.boxes, shown.scores, shown.classes):
        colour = class_colour(label)
        x1, y1, x2, y2 = (float(v) for v in np.clip(box, 0, [canvas.width, canvas.height] * 2))
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=colour, width=width)
        _label(draw, font, (x1, y1), f'{_name(label, class_names)} {score:.2f}', colour)
    return canvas


def _name(label, class_names):
    label = int(label)
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def _label(draw, font, corner, text, colour):
    """Text on a filled tag above the box's corner (inside it at the image's top edge),
    black or white, whichever reads better on the colour."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tag_w, tag_h = right - left + 4, bottom - top + 4
    x, y = corner[0], corner[1] - tag_h if corner[1] >= tag_h else corner[1]
    draw.rectangle((x, y, x + tag_w, y + tag_h), fill=colour)
    ink = (0, 0, 0) if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 128 \
        else (255, 255, 255)
    draw.text((x + 2 - left, y + 2 - top), text, fill=ink, font=font)


def draw_segmentation(image, classes, alpha=0.5, palette=None):
    """The image blended with one colour per class: ``image * (1 - alpha) + colour * alpha``.

    ``classes`` (H, W) is resized to the image by nearest neighbour if needed. The palette
    is Cityscapes' for labels below 19, else VOC's; pass (P, 3) colours to choose."""
    canvas = read_image(image)
    classes = np.asarray(classes)
    if classes.shape != (canvas.height, canvas.width):
        classes = class_map_to_image(classes, (canvas.height, canvas.width))
    colours = _palette(classes, palette)
    mask = colours[classes]
    blended = np.asarray(canvas, np.float32) * (1 - alpha) + mask.astype(np.float32) * alpha
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), 'RGB')


def _palette(classes, palette):
    low, high = (int(classes.min()), int(classes.max())) if classes.size else (0, 0)
    if low < 0:
        raise ValueError(f'class labels must not be negative; the map holds {low}')
    if palette is None:
        return CITYSCAPES_PALETTE if high < len(CITYSCAPES_PALETTE) else label_palette(high + 1)
    palette = np.asarray(palette, np.uint8).reshape(-1, 3)
    if high >= len(palette):
        raise ValueError(f'the palette has {len(palette)} colours; the map holds label {high}')
    return palette


def save_png(image, path):
    """Write ``image`` as a PNG at ``path``: all of it or, on any failure, nothing."""
    with atomic_output(path, suffix='.png') as tmp:
        image.save(tmp, format='PNG')

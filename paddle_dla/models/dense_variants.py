"""The dense predictors over DLA: one declarative row each, the only place they are defined.

DLA-Up segmentation (ucbdrive ``dla_up.py``) and CenterNet's ``DLASeg`` (also FairMOT's
network, with other heads). Their factories, checkpoint recognition, export metadata and
input recipe are all derived from these rows.
"""
from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..core.errors import UnknownName
from .variants import canonical_spelling

DENSE_TASKS = ('segmentation', 'detection', 'tracking')
CENTERNET_DOWN_RATIO = 4       # heads read the stride-4 map
SEGMENTATION_DOWN_RATIO = 2    # DLA-Up's classifier runs at stride 2, then up-samples
INPUT_MULTIPLE = 32            # five stride-2 stages: height and width must divide by 32

COCO_DETECTION_HEADS = (('hm', 80), ('wh', 2), ('reg', 2))
FAIRMOT_HEADS = (('hm', 1), ('wh', 4), ('id', 128), ('reg', 2))

# CenterNet reads images with OpenCV, so its COCO statistics are in BGR order.
COCO_MEAN_BGR = (0.40789654, 0.44719302, 0.47026115)
COCO_STD_BGR = (0.28863828, 0.27408164, 0.27809835)
# The Cityscapes training-set statistics as widely published. ucbdrive's segment.py reads
# its own from the dataset's info.json: record yours with export(..., preprocessing=).
CITYSCAPES_MEAN = (0.28689554, 0.32513303, 0.28389177)
CITYSCAPES_STD = (0.18696375, 0.19017339, 0.18720214)
MAX_HEADS = 64
DEFAULT_TOP_K = 100              # detections decoded per image: CenterNet's K
DEFAULT_SCORE_THRESHOLD = 0.3    # the lowest score shown: CenterNet's demo vis_thresh


@dataclass(frozen=True)
class DenseInput:
    """How an image becomes the network's input, and how its outputs map back."""

    height: int
    width: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    channel_order: str = 'rgb'     # 'bgr': the statistics (and the channels) are BGR
    # 'affine': CenterNet's test-time warp (OpenCV, 8-bit BGR, pixel indices mapped);
    # 'letterbox': FairMOT's (OpenCV INTER_AREA, one scale, centred on a 'fill' border);
    # 'stretch': the whole input;
    # 'native': the image at its own size, padded to a multiple of 32 (height and width are
    # then only the size an export fixed to one shape stretches images to).
    resize: str = 'letterbox'
    fill: float = 0.0              # the letterbox's border, in [0, 1] (0.5: FairMOT's grey)

    @property
    def native(self):
        """Whether images run at their own size (an export then takes any size)."""
        return self.resize == 'native'

    def as_dict(self):
        return {'height': self.height, 'width': self.width, 'mean': list(self.mean),
                'std': list(self.std), 'channel_order': self.channel_order,
                'resize': self.resize, 'fill': self.fill}

    @classmethod
    def from_dict(cls, data):
        values = dict(data)
        for key in ('mean', 'std'):
            values[key] = tuple(float(v) for v in values[key])
        values['fill'] = float(values.get('fill', 0.0))
        return cls(**values)


@dataclass(frozen=True)
class PublishedDetection:
    """A detector's published COCO box AP, with the file and the protocol it is for."""

    checkpoint: str     # the released file's name, without its extension
    dataset: str
    images: int
    ap: float           # one scale, 512x512
    ap_flip: float      # with the flip test
    source: str

    def ap_for(self, flip_test):
        return self.ap_flip if flip_test else self.ap


@dataclass(frozen=True)
class PublishedTracking:
    """A tracker's published MOT numbers, with the file and the sequences they are for
    (in the order the evaluation lists them; a sequence listed twice counts twice)."""

    checkpoint: str
    dataset: str
    sequences: Tuple[str, ...]
    mota: float
    idf1: float
    source: str


# FairMOT's track.py --val_mot15 list: TUD-Stadtmitte is listed, and scored, twice.
MOT15_VALIDATION = ('Venice-2', 'KITTI-13', 'KITTI-17', 'ETH-Bahnhof', 'ETH-Sunnyday',
                    'PETS09-S2L1', 'TUD-Campus', 'TUD-Stadtmitte', 'ADL-Rundle-6',
                    'ADL-Rundle-8', 'ETH-Pedcross2', 'TUD-Stadtmitte')


@dataclass(frozen=True)
class DenseConfig:
    """One dense network: its backbone, task, outputs and input recipe."""

    name: str                       # the create_model name, e.g. ``centernet_dla34``
    task: str                       # 'segmentation', 'detection' or 'tracking'
    backbone: str                   # our DLA variant name, e.g. ``dla_34``
    reference: str                  # the public code whose structure and keys it follows
    input: DenseInput
    heads: Tuple[Tuple[str, int], ...] = ()   # CenterNet-style heads, in checkpoint order
    num_classes: int = 0            # segmentation classes
    head_conv: int = 256
    class_names: Tuple[str, ...] = field(default=(), repr=False)
    top_k: int = DEFAULT_TOP_K
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    published: Optional[object] = None   # PublishedDetection or PublishedTracking

    @property
    def is_centernet(self):
        return bool(self.heads)

    @property
    def down_ratio(self):
        return CENTERNET_DOWN_RATIO if self.is_centernet else SEGMENTATION_DOWN_RATIO


COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
    'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier',
    'toothbrush')
# COCO's category ids of the 80 classes above, in order: 1 to 90 with ten gaps.
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91)
                          if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle')

_CENTERNET_INPUT = DenseInput(512, 512, COCO_MEAN_BGR, COCO_STD_BGR, 'bgr', 'affine')
# FairMOT feeds RGB scaled to [0, 1], 1088x608, letterboxed on 127.5 grey.
_FAIRMOT_INPUT = DenseInput(608, 1088, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 'rgb', 'letterbox',
                            fill=0.5)
# segment.py tests at full resolution: the Cityscapes images' own 1024x2048.
_CITYSCAPES_INPUT = DenseInput(1024, 2048, CITYSCAPES_MEAN, CITYSCAPES_STD, 'rgb', 'native')


def _segmentation(backbone, official):
    return DenseConfig(f'{official}up', 'segmentation', backbone, 'ucbdrive/dla dla_up.py',
                       _CITYSCAPES_INPUT, num_classes=len(CITYSCAPES_CLASSES),
                       class_names=CITYSCAPES_CLASSES)


DENSE_VARIANTS = {c.name: c for c in (
    _segmentation('dla_34', 'dla34'),
    _segmentation('dla_60', 'dla60'),
    _segmentation('dla_102', 'dla102'),
    _segmentation('dla_169', 'dla169'),
    DenseConfig('centernet_dla34', 'detection', 'dla_34',
                'xingyizhou/CenterNet pose_dla_dcn.py', _CENTERNET_INPUT,
                heads=COCO_DETECTION_HEADS, class_names=COCO_CLASSES,
                published=PublishedDetection('ctdet_coco_dla_2x', 'COCO val2017', 5000, 37.4,
                                             39.2, 'xingyizhou/CenterNet MODEL_ZOO.md')),
    DenseConfig('fairmot_dla34', 'tracking', 'dla_34', 'ifzhang/FairMOT pose_dla_dcn.py',
                _FAIRMOT_INPUT, heads=FAIRMOT_HEADS, class_names=('person',), top_k=500,
                score_threshold=0.4,  # FairMOT's K and conf_thres
                published=PublishedTracking('fairmot_dla34', '2DMOT15 validation',
                                            MOT15_VALIDATION, 76.5, 79.3,
                                            'ifzhang/FairMOT README')),
)}


def get_dense_config(name):
    """The row of a dense model (any spelling the registry accepts)."""
    key = canonical_spelling(name)
    if key not in DENSE_VARIANTS:
        raise UnknownName(f'unknown dense model {name!r}; known: {", ".join(DENSE_VARIANTS)}')
    return DENSE_VARIANTS[key]


def check_heads(heads):
    """``heads`` as ``((name, channels), ...)``, in order; names must be usable as layer
    names and counts positive."""
    items = tuple(heads.items()) if isinstance(heads, dict) else tuple(tuple(h) for h in heads)
    if not items or len(items) > MAX_HEADS:
        raise ValueError(f'heads must name 1 to {MAX_HEADS} heads, e.g. {{"hm": 80, "wh": 2, '
                         f'"reg": 2}}; got {len(items)}')
    for name, channels in items:
        if not (isinstance(name, str) and name.isidentifier() and not name.startswith('_')):
            raise ValueError(f'head name {name!r} is not a plain identifier')
        if name in RESERVED_HEAD_NAMES:
            raise ValueError(f'head name {name!r} is taken by the network itself')
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f'head {name!r} needs a positive channel count, got {channels!r}')
    return items


# Names the network's own layers use; the model refuses any other attribute it has too.
RESERVED_HEAD_NAMES = frozenset({'base', 'dla_up', 'ida_up', 'fc', 'up'})

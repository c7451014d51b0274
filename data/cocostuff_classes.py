"""COCO-Stuff class tables: the 182 fine classes, PiCIE's 27 coarse classes and the 171 fine classes.

COCO-Stuff "stuffthingmaps" label PNGs store one uint8 per pixel: 0..181 is the fine class
(COCO category id - 1) and 255 is unlabeled. PiCIE (following IIC) evaluates on 27 coarse classes:
12 "thing" classes (0..11) followed by 15 "stuff" classes (12..26).

The tables below are written out literally (rather than loaded from the original
``fine_to_coarse_dict.pickle`` at run time) so that the toolkit works without that file and so that
the mapping is reviewable in code. They were transcribed from the original PiCIE pickle and the
COCO-Stuff label list, and the tests check them against those files.

COCO-Stuff-171 (``--coco_classes 171``) evaluates on the fine classes themselves: the 182 ids less
the 11 thing ids COCO 2017 never annotated (:data:`UNUSED_FINE`), i.e. 80 thing classes (0..79,
stuffthingmaps values 0..90) followed by 91 stuff classes (80..170, values 91..181), each in
ascending value order: the class order of CAUSE's COCO-171 loader.
"""

import pickle
from pathlib import Path

import numpy as np

#: Number of fine COCO-Stuff classes (values 0..181 in a stuffthingmaps PNG).
N_FINE = 182
#: Value of unlabeled pixels in a stuffthingmaps PNG.
UNLABELED = 255
#: Value used for "ignore this pixel" in the evaluation lookup tables.
IGNORE_INDEX = -1

# Fine class names; index = value in the stuffthingmaps PNG = COCO category id - 1. Some thing
# ids (e.g. 11 'street sign', 25 'hat') have no COCO 2017 annotations but keep their slot so that
# the indices stay aligned with the category ids.
FINE_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus',  # 0-5
    'train', 'truck', 'boat', 'traffic light', 'fire hydrant', 'street sign',  # 6-11
    'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',  # 12-17
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra',  # 18-23
    'giraffe', 'hat', 'backpack', 'umbrella', 'shoe', 'eye glasses',  # 24-29
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard',  # 30-35
    'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',  # 36-41
    'tennis racket', 'bottle', 'plate', 'wine glass', 'cup', 'fork',  # 42-47
    'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich',  # 48-53
    'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut',  # 54-59
    'cake', 'chair', 'couch', 'potted plant', 'bed', 'mirror',  # 60-65
    'dining table', 'window', 'desk', 'toilet', 'door', 'tv',  # 66-71
    'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave',  # 72-77
    'oven', 'toaster', 'sink', 'refrigerator', 'blender', 'book',  # 78-83
    'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',  # 84-89
    'hair brush', 'banner', 'blanket', 'branch', 'bridge', 'building-other',  # 90-95
    'bush', 'cabinet', 'cage', 'cardboard', 'carpet', 'ceiling-other',  # 96-101
    'ceiling-tile', 'cloth', 'clothes', 'clouds', 'counter', 'cupboard',  # 102-107
    'curtain', 'desk-stuff', 'dirt', 'door-stuff', 'fence', 'floor-marble',  # 108-113
    'floor-other', 'floor-stone', 'floor-tile', 'floor-wood', 'flower', 'fog',  # 114-119
    'food-other', 'fruit', 'furniture-other', 'grass', 'gravel', 'ground-other',  # 120-125
    'hill', 'house', 'leaves', 'light', 'mat', 'metal',  # 126-131
    'mirror-stuff', 'moss', 'mountain', 'mud', 'napkin', 'net',  # 132-137
    'paper', 'pavement', 'pillow', 'plant-other', 'plastic', 'platform',  # 138-143
    'playingfield', 'railing', 'railroad', 'river', 'road', 'rock',  # 144-149
    'roof', 'rug', 'salad', 'sand', 'sea', 'shelf',  # 150-155
    'sky-other', 'skyscraper', 'snow', 'solid-other', 'stairs', 'stone',  # 156-161
    'straw', 'structural-other', 'table', 'tent', 'textile-other', 'towel',  # 162-167
    'tree', 'vegetable', 'wall-brick', 'wall-concrete', 'wall-other', 'wall-panel',  # 168-173
    'wall-stone', 'wall-tile', 'wall-wood', 'water-other', 'waterdrops', 'window-blind',  # 174-179
    'window-other', 'wood',  # 180-181
)

# Coarse class (0..26) of every fine class, index = fine class value.
FINE_TO_COARSE = (
    9, 11, 11, 11, 11, 11, 11, 11, 11, 8,  # 0-9
    8, 8, 8, 8, 8, 7, 7, 7, 7, 7,  # 10-19
    7, 7, 7, 7, 7, 6, 6, 6, 6, 6,  # 20-29
    6, 6, 6, 10, 10, 10, 10, 10, 10, 10,  # 30-39
    10, 10, 10, 5, 5, 5, 5, 5, 5, 5,  # 40-49
    5, 2, 2, 2, 2, 2, 2, 2, 2, 2,  # 50-59
    2, 3, 3, 3, 3, 3, 3, 3, 3, 3,  # 60-69
    3, 0, 0, 0, 0, 0, 0, 1, 1, 1,  # 70-79
    1, 1, 1, 4, 4, 4, 4, 4, 4, 4,  # 80-89
    4, 17, 17, 22, 20, 20, 22, 15, 25, 16,  # 90-99
    13, 12, 12, 17, 17, 23, 15, 15, 17, 15,  # 100-109
    21, 15, 25, 13, 13, 13, 13, 13, 22, 26,  # 110-119
    14, 14, 15, 22, 21, 21, 24, 20, 22, 15,  # 120-129
    17, 16, 15, 22, 24, 21, 17, 25, 16, 21,  # 130-139
    17, 22, 16, 21, 21, 25, 21, 26, 21, 24,  # 140-149
    20, 17, 14, 21, 26, 15, 23, 20, 21, 24,  # 150-159
    15, 24, 22, 25, 15, 20, 17, 17, 22, 14,  # 160-169
    18, 18, 18, 18, 18, 18, 18, 26, 26, 19,  # 170-179
    19, 24,  # 180-181
)

#: Coarse class names, spelled exactly as the original pickle's 'fine_name_to_coarse_name' values.
COARSE_NAMES = (
    'electronic-things', 'appliance-things', 'food-things', 'furniture-things',  # 0-3
    'indoor-things', 'kitchen-things', 'accessory-things', 'animal-things',  # 4-7
    'outdoor-things', 'person-things', 'sports-things', 'vehicle-things',  # 8-11
    'ceiling-stuff', 'floor-stuff', 'food-stuff', 'furniture-stuff', 'rawmaterial-stuff',  # 12-16
    'textile-stuff', 'wall-stuff', 'window-stuff', 'building-stuff', 'ground-stuff',  # 17-21
    'plant-stuff', 'sky-stuff', 'solid-stuff', 'structural-stuff', 'water-stuff',  # 22-26
)

#: Coarse "thing" classes (countable objects) and "stuff" classes (amorphous regions).
THING_CLASSES = tuple(range(12))
STUFF_CLASSES = tuple(range(12, 27))
N_COARSE = len(COARSE_NAMES)

# Guard against an edit that breaks the tables' shape; cheap, and runs once at import.
assert len(FINE_NAMES) == N_FINE and len(FINE_TO_COARSE) == N_FINE
assert all(0 <= c < N_COARSE for c in FINE_TO_COARSE)

# -- COCO-Stuff-171 ---------------------------------------------------------------------------------
#: Fine ids (stuffthingmaps values) with no pixel in COCO-Stuff: COCO categories removed before the 2014
#: release (label list: "Removed from COCO."): street sign, hat, shoe, eye glasses, plate, mirror,
#: window, desk, door, blender, hair brush.
UNUSED_FINE = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
#: Values 0..90 of a stuffthingmaps PNG are things, 91..181 stuff.
FIRST_STUFF_FINE = 91
#: The stuffthingmaps value of each of the 171 classes, index = class id.
FINE171_VALUES = tuple(v for v in range(N_FINE) if v not in UNUSED_FINE)
FINE171_NAMES = tuple(FINE_NAMES[v] for v in FINE171_VALUES)
N_FINE171 = len(FINE171_VALUES)
THING171_CLASSES = tuple(c for c, v in enumerate(FINE171_VALUES) if v < FIRST_STUFF_FINE)
STUFF171_CLASSES = tuple(c for c, v in enumerate(FINE171_VALUES) if v >= FIRST_STUFF_FINE)
assert (N_FINE171, len(THING171_CLASSES), len(STUFF171_CLASSES)) == (171, 80, 91)

#: The label sets of --coco_classes: 27 coarse classes (PiCIE's, the default; also the label set of a
#: checkpoint that records none) or the 171 fine ones.
DEFAULT_LABEL_SET = 27
LABEL_SETS = (DEFAULT_LABEL_SET, 171)


def label_set_name(coco_classes: int) -> str:
    """How records name a label set: 'COCO-Stuff-27' or 'COCO-Stuff-171'."""
    return f'COCO-Stuff-{coco_classes}'


def _evaluated_fine(stuff: bool, thing: bool) -> tuple:
    """171-class ids kept by a mode, in evaluation-class order."""
    _check_mode(stuff, thing)
    return (THING171_CLASSES if thing else ()) + (STUFF171_CLASSES if stuff else ())


def fine171_lut(stuff: bool = True, thing: bool = True) -> np.ndarray:
    """Lookup table from stuffthingmaps values to COCO-Stuff-171 evaluation classes.

    Returns:
        int16 array of length 256. Both modes: classes 0..170 (things 0..79, stuff 80..170). Stuff
        only: the 91 stuff classes as 0..90, thing pixels -1. Thing only: 0..79, stuff pixels -1.
        The unused ids (:data:`UNUSED_FINE`), unlabeled (255) and 182..254 are -1.
    """
    lut = np.full(256, IGNORE_INDEX, dtype=np.int16)
    for eval_class, fine_class in enumerate(_evaluated_fine(stuff, thing)):
        lut[FINE171_VALUES[fine_class]] = eval_class
    return lut


def fine171_names(stuff: bool = True, thing: bool = True) -> list[str]:
    """Names of the COCO-Stuff-171 evaluation classes of a mode, in :func:`fine171_lut`'s order."""
    return [FINE171_NAMES[c] for c in _evaluated_fine(stuff, thing)]


def group_classes(coco_classes: int, stuff: bool, thing: bool) -> tuple:
    """(thing ids, stuff ids) in evaluation numbering when both groups are evaluated, else ((), ()):
    the classes the thing and stuff mIoU average over."""
    if not (stuff and thing):
        return (), ()
    return (THING171_CLASSES, STUFF171_CLASSES) if coco_classes == 171 else (THING_CLASSES, STUFF_CLASSES)


PICKLE_NAME = 'fine_to_coarse_dict.pickle'
_INDEX_KEY = 'fine_index_to_coarse_index'
_NAME_KEY = 'fine_name_to_coarse_name'


def fine_to_coarse_dict() -> dict:
    """Return the mapping in the structure of the original ``fine_to_coarse_dict.pickle``.

    Returns:
        ``{'fine_index_to_coarse_index': {0..181: coarse index},
        'fine_name_to_coarse_name': {fine name: coarse name}}``, content-equal to the original file.
    """
    return {
        _NAME_KEY: {name: COARSE_NAMES[c] for name, c in zip(FINE_NAMES, FINE_TO_COARSE, strict=True)},
        _INDEX_KEY: {fine: coarse for fine, coarse in enumerate(FINE_TO_COARSE)},
    }


def load_fine_to_coarse(data_root: str | Path) -> dict[int, int]:
    """Return the fine -> coarse index table for a dataset root.

    If ``<data_root>/fine_to_coarse_dict.pickle`` exists (the layout the original README asks for),
    its ``'fine_index_to_coarse_index'`` table is used so that a user-supplied mapping wins;
    otherwise the built-in table is returned. The pickle is trusted input (it lives in the user's
    own dataset folder), as in the original code.

    Args:
        data_root: dataset root folder.

    Returns:
        dict mapping every fine class 0..181 to its coarse class.

    Raises:
        ValueError: the pickle exists but cannot be read, lacks the table, or does not map every
            fine class 0..181 to an integer coarse class 0..26.
    """
    path = Path(data_root) / PICKLE_NAME
    if not path.is_file():
        return {fine: coarse for fine, coarse in enumerate(FINE_TO_COARSE)}
    try:
        with open(path, 'rb') as f:
            content = pickle.load(f)
    except Exception as exc:  # any unpickling failure means the same thing to the user
        raise ValueError(
            f'{path}: cannot be read as a pickle ({type(exc).__name__}: {exc})') from exc
    if not isinstance(content, dict) or _INDEX_KEY not in content:
        raise ValueError(f'{path}: expected a dict with key {_INDEX_KEY!r}')
    table = content[_INDEX_KEY]
    if not isinstance(table, dict):
        raise ValueError(f'{path}: {_INDEX_KEY!r} is a {type(table).__name__}, expected a dict')
    try:
        # int() accepts numpy integers too; keys/values that are not integral fail here.
        result = {int(k): int(v) for k, v in table.items()}
    except (TypeError, ValueError) as exc:
        raise ValueError(f'{path}: {_INDEX_KEY!r} has non-integer keys or values') from exc
    missing = sorted(set(range(N_FINE)) - set(result))
    if missing:
        raise ValueError(f'{path}: {_INDEX_KEY!r} does not cover fine classes 0..{N_FINE - 1} '
                         f'(missing {missing[:5]}{"..." if len(missing) > 5 else ""})')
    bad = sorted(k for k in range(N_FINE) if not 0 <= result[k] < N_COARSE)
    if bad:
        raise ValueError(
            f'{path}: {_INDEX_KEY!r} maps fine classes {bad[:5]} outside 0..{N_COARSE - 1}')
    # Extra keys (e.g. 182..254) would make the LUT map non-class values; keep only real classes.
    return {k: result[k] for k in range(N_FINE)}


def _check_mode(stuff: bool, thing: bool) -> None:
    """Reject the one meaningless combination of evaluation modes."""
    if not (stuff or thing):
        raise ValueError('at least one of stuff and thing must be True')


def _evaluated_coarse(stuff: bool, thing: bool) -> tuple:
    """Coarse classes kept by a mode, in evaluation-class order."""
    _check_mode(stuff, thing)
    return (THING_CLASSES if thing else ()) + (STUFF_CLASSES if stuff else ())


def coarse_lut(fine_to_coarse: dict[int, int], stuff: bool = True,
               thing: bool = True) -> np.ndarray:
    """Build a lookup table from stuffthingmaps values to evaluation classes.

    ``lut[label_png]`` turns a whole uint8 label map into evaluation labels in one indexing step.

    Args:
        fine_to_coarse: fine class (0..181) -> coarse class (0..26), e.g. from
            :func:`load_fine_to_coarse`.
        stuff: evaluate the 15 stuff classes.
        thing: evaluate the 12 thing classes.

    Returns:
        int16 array of length 256. Both modes: coarse 0..26. Stuff only: stuff classes 12..26 become
        0..14 and thing pixels -1. Thing only: 0..11 and stuff pixels -1. Unlabeled (255) and
        values with no fine class (182..254) are -1.

    Raises:
        ValueError: neither stuff nor thing, or a coarse index outside 0..26.
    """
    kept = _evaluated_coarse(stuff, thing)
    # Renumber the kept coarse classes consecutively so evaluation classes are 0..n_classes-1.
    coarse_to_eval = np.full(N_COARSE, IGNORE_INDEX, dtype=np.int16)
    coarse_to_eval[list(kept)] = np.arange(len(kept), dtype=np.int16)
    lut = np.full(256, IGNORE_INDEX, dtype=np.int16)
    for fine, coarse in fine_to_coarse.items():
        fine, coarse = int(fine), int(coarse)
        if not 0 <= fine < N_FINE:
            continue  # only real fine classes map to something; 182..255 stay ignored
        if not 0 <= coarse < N_COARSE:
            raise ValueError(
                f'fine class {fine} maps to coarse class {coarse}, outside 0..{N_COARSE - 1}')
        lut[fine] = coarse_to_eval[coarse]
    return lut


def class_names(stuff: bool = True, thing: bool = True) -> list[str]:
    """Names of the evaluation classes of a mode, in the order :func:`coarse_lut` numbers them."""
    return [COARSE_NAMES[c] for c in _evaluated_coarse(stuff, thing)]


def n_classes(stuff: bool = True, thing: bool = True) -> int:
    """Number of evaluation classes of a mode: 27 (both), 15 (stuff only) or 12 (thing only)."""
    return len(_evaluated_coarse(stuff, thing))

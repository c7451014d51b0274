"""data/datasets.py: its image and label loaders fuzzed with malformed files (hypothesis).

Every case must be either loaded correctly (right shape, dtype and value range) or rejected
the documented way: a training image is skipped (None) with a warning naming the file; an
evaluation image or label map raises DataError naming the file. Intact files must load.
"""
import io
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from data.datasets import EvalImages, TrainImages
from data.validation import DataError

# Formats each mode can be written in (Pillow).
WRITABLE = {'RGB': ('PNG', 'JPEG', 'TIFF', 'BMP'), 'L': ('PNG', 'JPEG', 'TIFF', 'BMP', 'GIF'), 'LA': ('PNG', 'TIFF'),
            'P': ('PNG', 'GIF', 'BMP', 'TIFF'), 'RGBA': ('PNG', 'TIFF'), 'CMYK': ('JPEG', 'TIFF'),
            'I;16': ('PNG', 'TIFF'), '1': ('PNG', 'BMP', 'TIFF'), 'I': ('TIFF',), 'F': ('TIFF',)}
DAMAGE = ('none', 'truncate', 'zero', 'flip', 'garbage')
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)), deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow])  # the same examples on every run: no flaky CI

# Pillow warns about the damaged TIFFs it still reads; expected here.
pytestmark = pytest.mark.filterwarnings('ignore::UserWarning:PIL.TiffImagePlugin')

N_CLASSES = 5
LUT = np.full(256, -1, dtype=np.int16)
LUT[[10, 20, 30, 40, 50]] = np.arange(N_CLASSES)
VALID = np.zeros(256, dtype=bool)
VALID[:182] = VALID[255] = True


def _pixels(rng, mode, width, height):
    if mode in ('RGB', 'RGBA', 'CMYK', 'LA'):
        channels = len(mode)
        return Image.fromarray(rng.integers(0, 256, (height, width, channels), dtype=np.uint8), mode)
    if mode == 'I;16':
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    if mode == 'I':
        return Image.fromarray(rng.integers(-5, 70000, (height, width), dtype=np.int32))
    if mode == 'F':
        return Image.fromarray(rng.normal(100, 80, (height, width)).astype(np.float32))
    image = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), 'L')
    return image.convert(mode) if mode != 'L' else image


def _damage(data: bytes, how: str, rng) -> bytes:
    if how == 'truncate':
        return data[: int(rng.integers(0, max(len(data) - 1, 1)))]
    if how == 'zero':
        return b''
    if how == 'flip':
        data = bytearray(data)
        for position in rng.integers(0, len(data), size=max(1, len(data) // 50)):
            data[position] = int(rng.integers(0, 256))
        return bytes(data)
    if how == 'garbage':
        return rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
    return data


def _encode(image, fmt) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@st.composite
def image_cases(draw):
    mode = draw(st.sampled_from(sorted(WRITABLE)))
    return {'mode': mode, 'format': draw(st.sampled_from(WRITABLE[mode])),
            'width': draw(st.integers(1, 48)), 'height': draw(st.integers(1, 48)),
            'damage': draw(st.sampled_from(DAMAGE)), 'seed': draw(st.integers(0, 2 ** 32 - 1))}


@FUZZ
@given(case=image_cases())
def test_image_loaders_load_or_reject_with_the_file_name(case):
    rng = np.random.default_rng(case['seed'])
    data = _encode(_pixels(rng, case['mode'], case['width'], case['height']), case['format'])
    data = _damage(data, case['damage'], rng)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / 'image.jpg'  # the name the lists use, whatever the content
        path.write_bytes(data)
        label = Path(folder) / 'label.png'
        Image.new('L', (case['width'], case['height']), 20).save(label)
        warnings = _Warnings()
        logger = logging.getLogger('data.datasets')
        logger.addHandler(warnings)
        try:
            index, image = TrainImages([path], 32)[0]
        finally:
            logger.removeHandler(warnings)
        assert index == 0
        if image is None:
            assert case['damage'] != 'none', f'intact {case} was rejected'
            assert any(str(path) in m for m in warnings.messages)
        else:
            assert image.shape == (3, 32, 32) and str(image.dtype) == 'torch.uint8'
        try:
            _, image, mapped = EvalImages([path], 16, [label], LUT, label_valid=VALID)[0]
        except DataError as exc:
            assert case['damage'] != 'none', f'intact {case} was rejected: {exc}'
            # A damaged header may report another size: then the (intact) label map is the one named.
            assert str(path) in str(exc) or (str(label) in str(exc) and 'is ' in str(exc))
        else:
            assert image.shape == (3, 16, 16) and mapped.shape == (16, 16)


@st.composite
def label_cases(draw):
    return {'mode': draw(st.sampled_from(['L', 'L', 'L', 'P', 'I;16', 'RGB', '1'])),
            'width': draw(st.integers(1, 40)), 'height': draw(st.integers(1, 40)),
            'size_off': draw(st.sampled_from([(0, 0), (0, 0), (1, 0), (0, -1), (5, 3)])),
            'values': draw(st.sampled_from(['classes', 'defined', 'undefined'])),
            'damage': draw(st.sampled_from(['none', 'none', 'truncate', 'zero', 'flip', 'garbage'])),
            'policy': draw(st.sampled_from(['error', 'fix', 'resize'])), 'seed': draw(st.integers(0, 2 ** 32 - 1))}


@FUZZ
@given(case=label_cases())
def test_label_maps_load_or_raise_dataerror_naming_them(case):
    rng = np.random.default_rng(case['seed'])
    width, height = case['width'], case['height']
    label_w, label_h = max(1, width + case['size_off'][0]), max(1, height + case['size_off'][1])
    pools = {'classes': [10, 20, 30, 40, 50, 255], 'defined': [0, 10, 99, 181, 255], 'undefined': [10, 200, 254]}
    raw = rng.choice(pools[case['values']], size=(label_h, label_w)).astype(np.uint8)
    if case['values'] == 'undefined':
        raw.flat[0] = 200  # at least one undefined value
    if case['mode'] == 'I;16':
        label_image = Image.fromarray(raw.astype(np.uint16))
    else:
        label_image = Image.fromarray(raw, 'L')
        if case['mode'] != 'L':
            label_image = label_image.convert(case['mode'])
    data = _damage(_encode(label_image, 'PNG'), case['damage'], rng)
    with tempfile.TemporaryDirectory() as folder:
        image, label = Path(folder) / 'image.jpg', Path(folder) / 'label.png'
        Image.new('RGB', (width, height), (90, 30, 60)).save(image)
        label.write_bytes(data)
        dataset = EvalImages([image], 16, [label], LUT, label_policy=case['policy'], label_valid=VALID)
        try:
            _, _, mapped = dataset[0]
        except DataError as exc:
            assert str(label) in str(exc)
            if case['damage'] == 'none' and case['mode'] in ('L', 'P'):
                # An intact 8-bit map is rejected only for what --bad_labels error refuses.
                assert case['policy'] == 'error'
                assert (case['values'] == 'undefined' or case['size_off'] != (0, 0)
                        or (label_w, label_h) != (width, height))
                assert '--bad_labels fix' in str(exc)
            return
        intact = case['damage'] == 'none'
        if intact:
            assert case['mode'] in ('L', 'P'), 'a map that is not 8-bit class ids must be rejected'
            if case['policy'] == 'error':
                assert case['values'] != 'undefined' and (label_w, label_h) == (width, height)
        assert mapped.shape == (16, 16)
        values = set(mapped.unique().tolist())
        assert values <= set(range(-1, N_CLASSES))
        if intact and case['mode'] == 'L':
            assert values <= {int(v) for v in LUT[np.unique(raw)]} | {-1}


@pytest.mark.parametrize('policy', ['fix', 'resize'])
def test_fuzz_policies_are_accepted_by_the_parser(policy):
    from config import get_args_parser
    assert get_args_parser().parse_args(['--bad_labels', policy]).bad_labels == policy

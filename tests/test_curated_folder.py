"""The committed curated/ lists are the official IIC lists, and tools/make_curated.py's rule selects
exactly their members among the real images of ../shared/data/cocostuff_mini."""
import hashlib

import pytest

from helpers import REPO_ROOT, curated_ids
from tools.make_curated import LIST_NAME, main, select_curated

COUNTS = {'train2017': 49629, 'val2017': 2175}
# sha256 of the official files (the original repository's curated/ folder).
SHA256 = {'train2017': '3b837594a81880a70f177afab906fc45147d8b9c2c4f51132f784e41941812f9',
          'val2017': '7c629734c88f1a74bba6311e01d4d9fe976df84f07cb4fc86452ce5116e51655'}


@pytest.mark.parametrize('split', sorted(COUNTS))
def test_committed_lists_are_the_official_ones(split, shared_data_if_present):
    path = REPO_ROOT / 'curated' / split / LIST_NAME
    ids = curated_ids(REPO_ROOT, split)
    assert len(ids) == COUNTS[split] and ids == sorted(set(ids))
    assert all(len(i) == 12 and i.isdigit() for i in ids)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[split]
    if shared_data_if_present is not None:
        official = shared_data_if_present / 'picie_reference' / 'curated' / split / LIST_NAME
        assert path.read_bytes() == official.read_bytes()


@pytest.mark.parametrize('split', sorted(COUNTS))
def test_make_curated_selects_the_official_members_of_the_real_sample(split, shared_data_if_present):
    """Every real image of the sample (113 train, 118 val) is selected by the rule exactly when its
    id is in the committed official list."""
    if shared_data_if_present is None:
        pytest.skip('needs ../shared/data/cocostuff_mini (real COCO-Stuff label maps)')
    sample = shared_data_if_present / 'cocostuff_mini'
    labels = sorted((sample / 'annotations' / split).glob('*.png'))
    assert len(labels) > 100
    official = set(curated_ids(REPO_ROOT, split))
    expected = sorted(p.stem for p in labels if p.stem in official)
    assert 0 < len(expected) < len(labels)  # both outcomes occur: the comparison can fail
    assert select_curated(labels) == expected


def test_demo_lists_are_what_the_tool_writes_for_the_demo(tiny_demo, tmp_path):
    """The demo generator writes its own lists (every demo id): the tool gives the same lists with
    --min_size 240 (the demo's image size, below COCO's 360 px threshold, which drops them)."""
    assert main(['--data_root', str(tiny_demo), '--out_dir', str(tmp_path), '--min_size', '240',
                 '--workers', '1']) == 0
    for split in COUNTS:
        made = curated_ids(tmp_path, split)
        assert made and made == curated_ids(tiny_demo, split)
    assert main(['--data_root', str(tiny_demo), '--out_dir', str(tmp_path / 'coco_rule'), '--workers', '1']) == 0
    assert curated_ids(tmp_path / 'coco_rule', 'train2017') == []

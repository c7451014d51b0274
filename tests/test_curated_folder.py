"""The committed curated/ lists are what tools/make_curated.py writes for the demo set."""
from pathlib import Path

from tools.make_curated import LIST_NAME, main

REPO_ROOT = Path(__file__).resolve().parents[1]
COUNTS = {'train2017': 480, 'val2017': 40}


def _ids(path: Path) -> list:
    return path.read_text().splitlines()


def test_committed_lists_are_well_formed():
    for split, count in COUNTS.items():
        ids = _ids(REPO_ROOT / 'curated' / split / LIST_NAME)
        assert len(ids) == count and ids == sorted(set(ids))
        assert all(len(i) == 12 and i.isdigit() for i in ids)
    assert '49,629' in (REPO_ROOT / 'curated' / 'README.md').read_text()


def test_committed_lists_match_the_tool_on_a_regenerated_demo(tiny_demo, tmp_path):
    """Demo images do not depend on how many are generated, so the 12 + 6 image demo (seed 0) is the
    start of the 480 + 40 one: the tool's lists for it are the start of the committed lists, and
    equal the lists the demo generator writes."""
    assert main(['--data_root', str(tiny_demo), '--out_dir', str(tmp_path), '--min_size', '240',
                 '--workers', '1']) == 0
    for split in COUNTS:
        made = _ids(tmp_path / 'curated' / split / LIST_NAME)
        committed = _ids(REPO_ROOT / 'curated' / split / LIST_NAME)
        assert made == committed[:len(made)] == _ids(tiny_demo / 'curated' / split / LIST_NAME)
    # With COCO's 360 px threshold most demo images (shorter side 240-400 px) would be dropped.
    assert main(['--data_root', str(tiny_demo), '--out_dir', str(tmp_path / 'coco_rule'), '--workers', '1']) == 0
    assert len(_ids(tmp_path / 'coco_rule' / 'curated' / 'train2017' / LIST_NAME)) < 12

"""Shared pytest fixtures for the PiCIE toolkit tests."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Make the repo's packages (data, tools, ...) importable when pytest is started as `pytest`
# rather than `python -m pytest` from the repo root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: Read-only real data beside the repository: <repo>/../shared/data.
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """Path of ../shared/data (read-only real data); skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f'shared data folder not found: {SHARED_DATA}')
    return SHARED_DATA

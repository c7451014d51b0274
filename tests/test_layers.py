"""The layer rules of docs/architecture.md hold: `lint-imports` checks the contracts in pyproject.toml
([tool.importlinter]) over the product code, and a copy of the code with one upward import added breaks them."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO_ROOT

# The packages the contracts name; the entry scripts are single modules, which import-linter reads as
# external names (it cannot take a module as a root), so they are not copied: a forbidden import of one
# is seen either way.
PACKAGES = ('config', 'modules', 'data', 'utils', 'tools', 'benchmarks')
LINT_IMPORTS = Path(sys.executable).with_name('lint-imports')


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Runs lint-imports over the code under `root` with root/pyproject.toml's contracts, no cache written."""
    env = {'PATH': '/usr/bin:/bin', 'PYTHONPATH': str(root)}
    return subprocess.run([str(LINT_IMPORTS), '--no-cache', '--no-logo', str(root / 'pyproject.toml')],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope='module')
def code_copy(tmp_path_factory):
    """The product packages' .py files and pyproject.toml, copied (about 70 small files)."""
    root = tmp_path_factory.mktemp('layers')
    shutil.copy(REPO_ROOT / 'pyproject.toml', root)
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns('results', '*.sh',
                                                                                           '__pycache__'))
    clean = lint_imports(root)  # so that what breaks below is the added line, and the copy is what is read
    assert clean.returncode == 0, clean.stdout + clean.stderr
    return root


def test_layer_contracts_hold():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Contracts: 2 kept, 0 broken.' in result.stdout, result.stdout


@pytest.mark.parametrize('module, upward_import, broken', [
    ('utils/checkpoint.py', 'import config', 'utils is not allowed to import config'),
    ('utils/loaders.py', 'from modules import kmeans', 'utils is not allowed to import modules'),
    ('utils/run.py', 'import data.transforms', 'utils is not allowed to import data'),
    ('data/transforms.py', 'from config import flags', 'data is not allowed to import config'),
    ('modules/kmeans.py', 'import config.presets', 'modules is not allowed to import config'),
    ('modules/loss.py', 'import tools.compare_runs', 'modules is not allowed to import tools'),
    ('config/flags.py', 'import benchmarks.bench_epoch', 'config is not allowed to import benchmarks'),
    ('data/build.py', 'import train_picie', 'data is not allowed to import train_picie'),
])
def test_an_upward_import_breaks_a_contract(code_copy, module, upward_import, broken):
    path = code_copy / module
    original = path.read_text(encoding='utf-8')
    # Inside a function, as the lazy imports of the product are: the check must see those too.
    path.write_text(original + f'\n\ndef _upward():\n    {upward_import}\n', encoding='utf-8')
    try:
        result = lint_imports(code_copy)
    finally:
        path.write_text(original, encoding='utf-8')
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in result.stdout, result.stdout

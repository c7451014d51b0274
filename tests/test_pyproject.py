"""pyproject.toml names what the product code needs: every third-party import of the package's modules and
of the notebook (those inside functions included) comes from a distribution in `dependencies` or an extra, so
`pip install -e .` (plus the extra of an optional flag) is enough for every `--arch`. Installs nothing: the
imports are read with `ast` and mapped to the installed distributions that provide them."""
import ast
import functools
import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: pytest itself brings tomli there
    import tomli as tomllib

from helpers import REPO_ROOT

# Imports whose module belongs to one distribution but needs another installed to import.
NEEDS_ALSO = {'torch.utils.tensorboard': 'tensorboard'}


def normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares them: faiss_cpu and faiss-cpu, Pillow and pillow alike."""
    return re.sub(r'[-_.]+', '-', name).lower()


def requirement_name(requirement: str) -> str:
    return normalized(re.match(r'[A-Za-z0-9][A-Za-z0-9._-]*', requirement.strip()).group(0))


def declared(pyproject: dict) -> dict:
    """Distribution name -> where pyproject.toml declares it ('dependencies' or 'extra <name>')."""
    project = pyproject['project']
    names = {requirement_name(r): 'dependencies' for r in project['dependencies']}
    for extra, requirements in project.get('optional-dependencies', {}).items():
        for requirement in requirements:
            names.setdefault(requirement_name(requirement), f'extra {extra}')
    return names


def product_sources(root: Path, pyproject: dict) -> dict:
    """Display name -> Python source of every module the package installs, and of each notebook's code cells
    (IPython's `%` and `!` lines left out)."""
    setuptools = pyproject['tool']['setuptools']
    files = [root / f'{module}.py' for module in setuptools['py-modules']]
    files += sorted(path for package in setuptools['packages'] for path in (root / package).rglob('*.py'))
    sources = {str(path.relative_to(root)): path.read_text(encoding='utf-8') for path in files}
    for notebook in sorted(root.glob('*.ipynb')):
        cells = json.loads(notebook.read_text(encoding='utf-8'))['cells']
        lines = [line for cell in cells if cell['cell_type'] == 'code'
                 for line in ''.join(cell['source']).splitlines() if not line.lstrip().startswith(('%', '!'))]
        sources[notebook.name] = '\n'.join(lines)
    return sources


def imported_modules(source: str) -> set:
    """Absolute module names the source imports anywhere (top level, functions, branches)."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module)
    return modules


@functools.cache
def installed_providers() -> dict:
    """Top-level module -> the installed distributions that provide it (reading them all takes a second)."""
    return importlib.metadata.packages_distributions()


def undeclared_imports(root: Path, pyproject: dict) -> list:
    """One line per third-party import whose distribution pyproject.toml does not name."""
    setuptools = pyproject['tool']['setuptools']
    own = set(setuptools['py-modules']) | set(setuptools['packages'])
    names = declared(pyproject)
    providers = installed_providers()
    problems = []
    for where, source in product_sources(root, pyproject).items():
        for module in sorted(imported_modules(source)):
            top = module.split('.')[0]
            if top in own or top in sys.stdlib_module_names:
                continue
            needed = [normalized(d) for d in providers.get(top, [])]
            if not needed:
                problems.append(f'{where}: imports {module}, which no installed distribution provides')
                continue
            if not any(d in names for d in needed):
                problems.append(f'{where}: imports {module} from {" or ".join(needed)}, not in pyproject.toml')
            also = NEEDS_ALSO.get(module)
            if also and normalized(also) not in names:
                problems.append(f'{where}: imports {module}, which needs {also}, not in pyproject.toml')
    return problems


@pytest.fixture(scope='module')
def pyproject():
    return tomllib.loads((REPO_ROOT / 'pyproject.toml').read_text(encoding='utf-8'))


def test_every_third_party_import_is_declared(pyproject):
    assert undeclared_imports(REPO_ROOT, pyproject) == []


def test_an_undeclared_import_is_found(pyproject):
    """timm out of the dependencies (as it once was) fails the check, naming the files that import it."""
    without_timm = json.loads(json.dumps(pyproject))
    without_timm['project']['dependencies'].remove('timm')
    problems = undeclared_imports(REPO_ROOT, without_timm)
    assert 'modules/vit.py: imports timm, which no installed distribution provides' not in problems
    assert any(line.startswith('modules/vit.py: imports timm') and 'timm, not in pyproject.toml' in line
               for line in problems), problems
    assert all('timm' in line for line in problems), problems


def test_dependencies_are_the_pinned_requirements(pyproject):
    """requirements.txt pins exactly the dependencies, requirements-dev.txt every extra (so its tests run)."""
    def pinned(name):
        lines = (REPO_ROOT / name).read_text(encoding='utf-8').splitlines()
        return {requirement_name(line) for line in lines if line.strip() and not line.startswith(('#', '-r'))}
    project = pyproject['project']
    assert pinned('requirements.txt') == {requirement_name(r) for r in project['dependencies']}
    extras = {requirement_name(r) for rs in project['optional-dependencies'].values() for r in rs}
    assert extras <= pinned('requirements-dev.txt')

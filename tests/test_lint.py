"""The code passes the linter of make test: ruff with the rule set of pyproject.toml ([tool.ruff]: pyflakes,
import order, bugbear, pyupgrade, line length), and that rule set reports each kind of mistake it was chosen for."""
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO_ROOT

RUFF = Path(sys.executable).with_name('ruff')


def ruff(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`ruff check` with the repository's configuration, no cache written."""
    return subprocess.run([str(RUFF), 'check', '--no-cache', '--config', str(REPO_ROOT / 'pyproject.toml'), *args],
                          cwd=REPO_ROOT, input=stdin, capture_output=True, text=True, timeout=120)


def test_the_code_is_lint_clean():
    result = ruff('.')
    assert result.returncode == 0, (result.stdout + result.stderr
                                    + '\nfix with: .venv/bin/ruff check --fix . (then look at what is left)')


@pytest.mark.parametrize('source, rule', [
    ('import os\n', 'F401'),                                                   # an unused import
    ('def f():\n    return undefined_name\n', 'F821'),                        # a name never defined
    ('import sys\nimport os\n\nprint(os, sys)\n', 'I001'),                     # imports out of order
    ('import torch\nimport os\n\nprint(os, torch)\n', 'I001'),                 # third-party before the standard library
    ('def f(a, b):\n    return list(zip(a, b))\n', 'B905'),                   # zip() that would drop a tail silently
    ('fs = []\nfor i in range(3):\n    fs.append(lambda: i)\n', 'B023'),       # a loop variable bound late
    ('def f(x=[]):\n    return x\n', 'B006'),                                  # a mutable default argument
    ('from typing import List\n\nx: List[int] = []\n', 'UP006'),               # old typing syntax
    (f'x = {"1 + " * 40}1\n', 'E501'),                                         # a line over 120 characters
])
def test_the_rule_set_reports(source, rule):
    result = ruff('--stdin-filename', 'modules/planted.py', '-', stdin=source)
    assert result.returncode == 1 and rule in result.stdout, result.stdout + result.stderr

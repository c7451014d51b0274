"""utils/cli.py: what an error becomes at the command line (one 'error:' line, exit code 2 for bad
input), and the entry points leave that to run_cli rather than catching UserError themselves."""
import ast

import pytest

from helpers import REPO_ROOT, assert_one_error_line
from utils.cli import run_cli
from utils.errors import UserError

#: Every script a user runs: each ends a UserError (bad input, a failed write) through run_cli.
ENTRY_POINTS = ('train_picie.py', 'test_picie.py', 'predict.py',  # train_mdc.py hands its argv to train_picie.py's
                *sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / 'tools').glob('*.py')
                        if 'def main(' in p.read_text()))

def test_a_user_error_ends_as_one_line_and_exit_code_2(capsys):
    def body():
        raise UserError('--n_images 0 must be at least 1')
    assert_one_error_line(run_cli(body), capsys.readouterr().err, '--n_images 0 must be at least 1')


@pytest.mark.parametrize('script', ENTRY_POINTS)
def test_entry_points_leave_user_errors_to_run_cli(script):
    """Each calls run_cli and has no `except UserError` of its own (which would print its own line
    with its own exit code): run_cli is the one place that ends bad input."""
    tree = ast.parse((REPO_ROOT / script).read_text())
    assert 'run_cli' in {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}, script
    catching = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler)
                and node.type is not None and 'UserError' in ast.unparse(node.type)]
    assert not catching, f'{script} catches UserError by hand at lines {catching}'

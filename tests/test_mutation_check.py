"""tools/mutation_check.py (`make mutation`) stays applicable: every deliberate breakage still finds the code it
edits, once, and names tests that exist. (Running the mutations is `make mutation`'s job, minutes long.)"""
import ast

import pytest

from helpers import REPO_ROOT
from tools.mutation_check import MUTATIONS


def _test_functions(path) -> set:
    return {node.name for node in ast.walk(ast.parse(path.read_text(encoding='utf-8')))
            if isinstance(node, ast.FunctionDef) and node.name.startswith('test_')}


@pytest.mark.parametrize('mutation', MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_each_mutation_applies_once_and_names_existing_tests(mutation):
    source = (REPO_ROOT / mutation.path).read_text(encoding='utf-8')
    assert source.count(mutation.original) == 1, f'{mutation.path} no longer holds the code this mutation edits'
    assert mutation.mutated != mutation.original
    for test in mutation.tests:
        file, _, name = test.partition('::')
        assert (REPO_ROOT / file).is_file(), f'{file} does not exist'
        assert not name or name.split('[')[0] in _test_functions(REPO_ROOT / file), f'{test} does not exist'

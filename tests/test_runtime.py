"""utils/runtime.py: how the entry scripts start and end."""
import ast
import gc

import pytest

from helpers import REPO_ROOT
from utils.runtime import script_main

SCRIPTS = ('train_picie.py', 'test_picie.py', 'predict.py', 'config/__main__.py', 'tools/invariance.py',
           'tools/visualize.py', 'tools/make_figures.py', 'tools/compare_runs.py', 'tools/seed_summary.py',
           'benchmarks/fingerprint.py')


def test_script_main_freezes_what_was_imported_and_exits_with_the_code():
    seen = {}

    def main():
        seen['frozen'] = gc.get_freeze_count()
        return 3
    try:
        with pytest.raises(SystemExit) as stop:
            script_main(main)
    finally:
        gc.unfreeze()  # give this test process its collector back
    assert stop.value.code == 3
    assert seen['frozen'] > 1000  # the imports' objects (torch alone makes tens of thousands)


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_that_import_torch_start_through_script_main(script):
    """Each script's `if __name__ == "__main__":` block calls script_main: ~1.2 s less per command."""
    tree = ast.parse((REPO_ROOT / script).read_text())
    guard = [node for node in tree.body if isinstance(node, ast.If) and 'script_main' in ast.unparse(node)
             and '__main__' in ast.unparse(node.test)]
    assert guard, f'{script} does not end with `if __name__ == "__main__": script_main(...)`'

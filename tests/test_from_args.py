"""config/from_args.py (with the rest of config/) is the only code that reads a flag's value from the parsed
namespace: the entry scripts, tools/, modules/, data/ and utils/ take typed settings (docs/architecture.md)."""
import ast
from pathlib import Path

from helpers import REPO_ROOT

ENTRY_SCRIPTS = ('train_picie.py', 'test_picie.py', 'predict.py', 'train_mdc.py')
BELOW_AND_BESIDE_CONFIG = ('tools', 'modules', 'data', 'utils')
# Methods of the dicts and lists that are also called `args` (a checkpoint's recorded flags, an argv).
CONTAINER_METHODS = {'get', 'items', 'keys', 'values', 'append', 'extend', 'copy', 'pop', 'update'}


def namespace_reads(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """'file:line args.NAME' (file relative to root) for each attribute read of a name `args` that is not a
    container method."""
    tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
    return [f'{path.relative_to(root)}:{node.lineno} args.{node.attr}' for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == 'args'
            and node.attr not in CONTAINER_METHODS]


def _files() -> list[Path]:
    files = [REPO_ROOT / name for name in ENTRY_SCRIPTS]
    for package in BELOW_AND_BESIDE_CONFIG:
        files += sorted((REPO_ROOT / package).rglob('*.py'))
    return files


def test_only_config_reads_the_parsed_flags():
    assert [read for path in _files() for read in namespace_reads(path)] == []


def test_a_flag_read_outside_config_is_found(tmp_path):
    planted = tmp_path / 'tools' / 'planted.py'
    planted.parent.mkdir()
    planted.write_text('def main(args, argv):\n    argv.append("-v")\n    return args.n_images, args.get("x")\n',
                       encoding='utf-8')
    assert namespace_reads(planted, tmp_path) == ['tools/planted.py:3 args.n_images']

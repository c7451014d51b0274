"""config/flags.py: each flag's default is written in one place (docs/architecture.md). The product
code is read as syntax trees, and every literal that restates a flag's default is counted: the flag
table's own `default=<literal>`, a parameter or dataclass field named after the flag with that
literal as its default, and `<record>.get("<flag>", <literal>)` (a record written before the flag
was). A flag whose default comes from a settings field (`default=DataSettings.coco_classes`) or a
named constant counts no literal in the table. Switches (boolean defaults: off) are not counted, nor
the names in SAME_NAME_OTHER_SETTING, which name another setting of their own."""
import ast
from pathlib import Path

from config import FLAGS
from helpers import REPO_ROOT

PRODUCT = ('config', 'modules', 'data', 'utils', 'tools')
ENTRY_SCRIPTS = ('train_picie.py', 'test_picie.py', 'predict.py', 'train_mdc.py')
# Parameters named like a flag that are not that flag's setting.
SAME_NAME_OTHER_SETTING = {
    'seed': 'tools/make_figures.py: the seed of its own figure runs, not a --seed of a script',
    'matching': "the scoring protocol's matching of modules/metrics.py (Hungarian, the paper's); predict.py's "
                '--matching picks one of the matchings a checkpoint stores',
}


def _product_files() -> list[Path]:
    files = [REPO_ROOT / name for name in ENTRY_SCRIPTS]
    for package in PRODUCT:
        files += sorted((REPO_ROOT / package).rglob('*.py'))
    return files


def _literal(node) -> tuple[bool, object]:
    """(is a literal, its value): constants and tuples/lists of constants, negative numbers included."""
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _same(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return value is default
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return list(value) == list(default)
    return type(value) in (int, float, str) and type(default) in (int, float, str) and value == default


def _restatements(tree: ast.AST, dests: dict[str, object]) -> list[tuple[str, int]]:
    """[(dest, line)] of each literal restating the default of a flag in `dests` ({dest: default}):
    parameters and class fields named after the flag, and `.get("<flag>", <literal>)`."""
    found = []

    def note(name: str, node, line: int) -> None:
        if name in dests:
            ok, value = _literal(node)
            if ok and _same(value, dests[name]):
                found.append((name, line))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            positional = node.args.posonlyargs + node.args.args
            with_default = positional[len(positional) - len(node.args.defaults):]
            for arg, default in zip(with_default, node.args.defaults, strict=True):
                note(arg.arg, default, default.lineno)
            for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True):
                if default is not None:
                    note(arg.arg, default, default.lineno)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                    note(item.target.id, item.value, item.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == 'get' and len(node.args) == 2 and \
                    isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                note(node.args[0].value, node.args[1], node.lineno)
    return found


def _literal_fields(trees: dict[str, ast.AST]) -> dict[tuple[str, str], str]:
    """{(class, field): 'file:line'} of every class field with a literal default."""
    fields = {}
    for where, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and \
                            item.value is not None and _literal(item.value)[0]:
                        fields[(node.name, item.target.id)] = f'{where}:{item.lineno}'
    return fields


def _table_places(table: ast.AST, where: str, fields: dict[tuple[str, str], str]) -> dict[str, str]:
    """{dest: 'file:line'}: where the flag table's `default=` is written: the table's line for a
    literal or a named constant, the field's line for `default=<Settings>.<field>` of a literal field."""
    places = {}
    for node in ast.walk(table):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == '_flag':
            names = [a.value for a in node.args[3:] if isinstance(a, ast.Constant)]
            default = next((k.value for k in node.keywords if k.arg == 'default'), None)
            if not names or default is None:
                continue
            place = f'{where}:{node.lineno}'
            if isinstance(default, ast.Attribute) and isinstance(default.value, ast.Name):
                place = fields.get((default.value.id, default.attr), place)
            places[names[0].lstrip('-')] = place
    return places


def restated_defaults(files: list[Path]) -> dict[str, list[str]]:
    """{dest: ['file:line', ...]} of the flags whose default is written in more than one place."""
    dests = {flag.dest: flag.kwargs['default'] for flag in FLAGS
             if flag.kwargs.get('default') is not None and not isinstance(flag.kwargs['default'], bool)
             and flag.dest not in SAME_NAME_OTHER_SETTING}
    trees = {str(path): ast.parse(path.read_text(), str(path)) for path in files}
    table = str(REPO_ROOT / 'config' / 'flags.py')
    places: dict[str, set] = {dest: {where} for dest, where in
                              _table_places(trees[table], table, _literal_fields(trees)).items() if dest in dests}
    for where, tree in trees.items():
        for dest, line in _restatements(tree, dests):
            places.setdefault(dest, set()).add(f'{where}:{line}')
    return {dest: sorted(where) for dest, where in places.items() if len(where) > 1}


def test_each_flag_default_is_written_once():
    assert restated_defaults(_product_files()) == {}


def test_a_second_literal_of_a_default_is_found(tmp_path):
    """The check sees a restated default in each of the forms it knows (a parameter, a class field,
    a record's .get)."""
    copy = tmp_path / 'restated.py'
    copy.write_text('from dataclasses import dataclass\n\n'
                    'def build(root, coco_classes: int = 27):\n    return root\n\n'
                    '@dataclass\nclass Settings:\n    arch: str = "resnet18"\n\n'
                    'def check(saved):\n'
                    '    return saved.get("coco_classes", 27), saved.get("photometric_res", "view")\n')
    found = restated_defaults([*_product_files(), copy])
    assert set(found) == {'coco_classes', 'arch', 'photometric_res'}
    assert len(found['coco_classes']) == 3 and sum(str(copy) in w for w in found['coco_classes']) == 2


def test_a_default_restated_in_product_code_is_found(tmp_path):
    """data/cocostuff.py's build_cocostuff with its own 27 again (as at the issue's commit)."""
    source = REPO_ROOT / 'data' / 'cocostuff.py'
    broken = tmp_path / 'cocostuff.py'
    broken.write_text(source.read_text().replace('coco_classes: int = DEFAULT_LABEL_SET', 'coco_classes: int = 27'))
    found = restated_defaults([broken if path == source else path for path in _product_files()])
    assert list(found) == ['coco_classes'] and len(found['coco_classes']) == 2
    assert any(str(broken) in where for where in found['coco_classes'])


def fallback_reads(tree: ast.AST) -> list[int]:
    """Lines of `getattr(args, name, default)`: a flag read with a fallback for a parser without it."""
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'getattr'
            and len(node.args) == 3 and isinstance(node.args[0], ast.Name) and node.args[0].id == 'args']


# Methods of the dicts and lists that are also called `args` (a checkpoint's recorded flags, an argv).
CONTAINER_METHODS = {'get', 'items', 'keys', 'values', 'append', 'extend', 'copy', 'pop', 'update'}


def flag_reads(tree: ast.AST) -> list[int]:
    """Lines where a flag's value is read from the parsed `args` (`args.<flag>`)."""
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == 'args' and isinstance(node.ctx, ast.Load)
            and node.attr not in CONTAINER_METHODS]


def test_no_flag_is_read_with_a_fallback():
    found = {str(path): fallback_reads(ast.parse(path.read_text())) for path in _product_files()}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_the_scripts_take_typed_settings_from_config():
    """The entry scripts, every tool and modules/, data/, utils/ hand the parsed flags to config/ (from_args.py)
    and read the typed objects it returns, never `args.<flag>`."""
    outside_config = [path for path in _product_files() if path.parent.name != 'config']
    found = {str(path): flag_reads(ast.parse(path.read_text())) for path in outside_config}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_the_read_checks_see_what_they_guard():
    tree = ast.parse('def main(args, argv):\n    n = getattr(args, "retries", 0)\n    argv.append("-v")\n'
                     '    return args.eval_path, n, args.get("x")\n')
    assert fallback_reads(tree) == [2] and flag_reads(tree) == [4]

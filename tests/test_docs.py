"""The documentation points at things that exist: links, anchors, `file.py: name` code references and
`tests/file.py::test` names. A renamed function or section breaks these tests, not the reader's trust."""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / 'README.md', *(ROOT / 'docs').glob('*.md')])

LINK = re.compile(r'\]\(([^)\s]+)\)')
# `path.py: name` or `path.py: Class.method` inside backticks (the docs' way of citing code)
CODE_REF = re.compile(r'`([\w/]+\.py): (\w+(?:\.\w+)?)')
TEST_REF = re.compile(r'`(tests/[\w/]+\.py)::(\w+)`')


def slug(title):
    """GitHub's anchor for a Markdown title: lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r'[`*]', '', title.strip().lower())
    title = re.sub(r'[^\w\- ]', '', title)
    return title.replace(' ', '-')


def anchors(page):
    text = re.sub(r'```.*?```', '', page.read_text(encoding='utf-8'), flags=re.S)
    return {slug(line.lstrip('#')) for line in text.splitlines() if re.match(r'#{1,6} ', line)}


def defined_names(path):
    """Top-level names of a Python file, and Class.attr for the attributes of its classes."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        names.add(f'{node.name}.{item.name}')
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        names.add(f'{node.name}.{item.target.id}')
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def page_ids(pages):
    return [str(p.relative_to(ROOT)) for p in pages]


@pytest.mark.parametrize('page', PAGES, ids=page_ids(PAGES))
def test_links_and_anchors_exist(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding='utf-8')):
        if re.match(r'[a-z]+:', target):        # http(s), mailto
            continue
        path, _, anchor = target.partition('#')
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f'{target}: no file {dest.relative_to(ROOT) if ROOT in dest.parents else dest}')
        elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
            broken.append(f'{target}: no section #{anchor} in {dest.name}')
    assert not broken, f'{page.name}: ' + '; '.join(broken)


@pytest.mark.parametrize('page', PAGES, ids=page_ids(PAGES))
def test_code_references_exist(page):
    text = page.read_text(encoding='utf-8')
    missing = []
    for path, name in CODE_REF.findall(text):
        file = ROOT / path
        if not file.exists():
            missing.append(f'{path}: no such file')
        elif name not in defined_names(file):
            missing.append(f'{path}: {name} is not defined there')
    for path, name in TEST_REF.findall(text):
        file = ROOT / path
        if not file.exists() or f'def {name}(' not in file.read_text(encoding='utf-8'):
            missing.append(f'{path}::{name} does not exist')
    assert not missing, f'{page.name}: ' + '; '.join(missing)


# A repository path in running text or code style: a top-level folder of the repository, then a path.
# Placeholders (<run>, *, {a,b}) end the match, so a path is checked up to its last literal folder.
REPO_DIRS = ('modules', 'data', 'utils', 'tools', 'tests', 'sh_files', 'benchmarks', 'docs', 'curated')
PATH_REF = re.compile(r'(?<![\w./-])((?:' + '|'.join(REPO_DIRS) + r')/[\w./-]*)([*<{]?)')
# Where a page points at the project's tracker, which readers of the repository cannot see.
TRACKER_REF = re.compile(r"\bthe issue\b|\bissue's\b|\ban issue of this project\b|\bissue \d+", re.I)


def repository_paths(text):
    """The repository paths a page names (trailing sentence punctuation dropped); a path cut short by a
    placeholder (benchmarks/results/cpu2core_*.json) ends in '*': some file must start with it."""
    return sorted({path.rstrip('.') + ('*' if cut else '') for path, cut in PATH_REF.findall(text)})


def path_exists(path):
    if path.endswith('*'):
        prefix = ROOT / path[:-1]
        return prefix.parent.is_dir() and any(p.name.startswith(prefix.name) for p in prefix.parent.iterdir())
    return (ROOT / path).exists()


@pytest.mark.parametrize('page', PAGES, ids=page_ids(PAGES))
def test_named_files_exist(page):
    """`utils/metrics.py`, sh_files/x.sh, docs/figures/x.png ...: every repository path a page names exists."""
    missing = [path for path in repository_paths(page.read_text(encoding='utf-8')) if not path_exists(path)]
    assert not missing, f'{page.name} names files that do not exist: {missing}'


@pytest.mark.parametrize('page', PAGES, ids=page_ids(PAGES))
def test_no_reference_to_the_tracker(page):
    """A reader has the repository, not the tracker: "the issue", "issue 12" explain nothing to them."""
    found = sorted({m.group(0) for m in TRACKER_REF.finditer(page.read_text(encoding='utf-8'))})
    assert not found, f'{page.name} refers to the tracker ({found}); say what it measured or decided instead'


def test_the_path_and_tracker_checks_see_what_they_guard():
    text = 'the missing `utils/metrics.py`, sh_files/demo.sh. and ../shared/data/README.md, tools/<name>.py'
    assert repository_paths(text) == ['sh_files/demo.sh', 'tools/*', 'utils/metrics.py']
    assert not path_exists('utils/metrics.py') and path_exists('tools/make_*') and not path_exists('tools/nothing_*')
    assert TRACKER_REF.search('the collapses of the Issue\'s probe') and TRACKER_REF.search('(issue 12)')
    assert not TRACKER_REF.search('a known issue with faiss')


def test_the_checks_see_references():
    """The walkthrough's references are found by the patterns above (so the tests above are not vacuous)."""
    text = (ROOT / 'docs' / 'understanding_picie.md').read_text(encoding='utf-8')
    assert len(CODE_REF.findall(text)) >= 15
    assert slug('9. One photometric + one geometric transform: what it removes') == \
        '9-one-photometric--one-geometric-transform-what-it-removes'
    assert 'SiamesePair.forward' in defined_names(ROOT / 'modules' / 'siamese.py')


def project_vocabulary():
    """Every function, class, method, assigned name and string constant of the project's Python files."""
    words = set()
    for file in ROOT.glob('*.py'):
        words |= _vocabulary(file)
    for package in ('config', 'modules', 'data', 'utils', 'tools', 'benchmarks', 'tests'):
        for file in (ROOT / package).rglob('*.py'):
            words |= _vocabulary(file)
            words.add('.'.join(file.relative_to(ROOT).with_suffix('').parts))  # tools.seed_summary
    return words


def _vocabulary(file):
    words = set()
    for node in ast.walk(ast.parse(file.read_text(encoding='utf-8'))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words.add(node.name)
            if isinstance(node, ast.ClassDef):
                words |= {f'{node.name}.{item.name}' for item in node.body
                          if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
                words |= {f'{node.name}.{item.target.id}' for item in node.body
                          if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
        elif isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            words.add(node.value)
    return words


# Mathematical symbols the walkthrough writes in code style.
MATH = {'w_k', 'y_v'}


def test_walkthrough_names_exist():
    """Every code-like name in the walkthrough (snake_case or CamelCase in backticks) is in the code."""
    text = (ROOT / 'docs' / 'understanding_picie.md').read_text(encoding='utf-8')
    tokens = set(re.findall(r'`([A-Za-z_]\w*(?:\.\w+)?)`', text))
    code_like = {t for t in tokens if ('_' in t or re.search(r'[a-z][A-Z]', t))
                 and not re.search(r'\.(py|npy|md|json|sh)$', t)}
    assert len(code_like) >= 30
    missing = sorted(code_like - project_vocabulary() - MATH)
    assert not missing, f'understanding_picie.md names code that does not exist: {missing}'


# ----------------------------------------------------------------------------------------
# The shell commands the pages show, run as written in their dry-run form
# ----------------------------------------------------------------------------------------
CODE_BLOCK = re.compile(r'```(?:bash|sh|shell)?\n(.*?)```', re.S)
ASSIGNMENT = re.compile(r'^([A-Z_][A-Z0-9_]*)=("[^"]*"|\S*)\s+')
# What a variable becomes on the printed command line, where it is one flag (sh_files/script_env.sh's
# FLAG_OF, and the paths and names every training script takes).
FLAG_OF_VARIABLE = {'EPOCHS': '--num_epoch', 'LR': '--lr', 'SEED': '--seed', 'K_TRAIN': '--K_train',
                    'K_TEST': '--K_test', 'RES1': '--res1', 'PRESET': '--preset', 'RUN_NAME': '--run_name',
                    'SAVE_ROOT': '--save_root', 'DATA_ROOT': '--data_root', 'PHOTO': '--inv_list',
                    'GEO': '--eqv_list', 'NNODES': '--nnodes', 'NODE_RANK': '--node_rank',
                    'MASTER_ADDR': '--master_addr', 'MASTER_PORT': '--master_port'}


def documented_commands():
    """(page, line) of every line of a shell code block that runs a script of sh_files/ or `make demo`."""
    found = []
    for page in PAGES:
        for block in CODE_BLOCK.findall(page.read_text(encoding='utf-8')):
            for line in block.splitlines():
                if 'sh_files/' in line or re.match(r'\s*make demo\b', line):
                    found.append((str(page.relative_to(ROOT)), line.strip()))
    return found


def dry_run_form(line):
    """The line as a dry run: its comment, `nohup`, output redirection and `&` dropped, scripts by their
    full path, `make demo` as the script it runs; DRY_RUN=1 comes from the environment."""
    line = re.sub(r'\s+#.*$', '', line)
    line = re.sub(r'\bnohup\s+', '', line)
    line = re.sub(r'\s*>\s*\S+\s*&?\s*$', '', line).rstrip('& ')
    line = re.sub(r'^make demo\b', './sh_files/demo.sh', line)
    return line.replace('./sh_files/', f'{ROOT}/sh_files/')


def variables_of(line):
    """The VAR=value assignments in front of the line's command (inside a for loop: of its body)."""
    body = line.split(' do ', 1)[1] if line.startswith('for ') else line
    found = {}
    while (match := ASSIGNMENT.match(body)):
        found[match.group(1)] = match.group(2).strip('"')
        body = body[match.end():]
    return found


DOCUMENTED = documented_commands()


def test_the_command_finder_sees_the_pages_commands():
    lines = [line for _, line in DOCUMENTED]
    assert any(line.startswith('RUN_NAME=demo_1epoch EPOCHS=1 ./sh_files/demo.sh') for line in lines)
    assert variables_of('for S in 2 3; do PRESET=demo SEED=$S ./x.sh; done') == {'PRESET': 'demo', 'SEED': '$S'}
    assert dry_run_form('nohup ./sh_files/a.sh > logs/a.out &   # note') == f'{ROOT}/sh_files/a.sh'


@pytest.mark.parametrize('page, line', DOCUMENTED, ids=[f'{p}: {line[:60]}' for p, line in DOCUMENTED])
def test_documented_script_command_runs_as_written(page, line, tmp_path):
    """Each command runs (DRY_RUN=1) with exit 0 and no warning, and each variable it sets reaches the
    printed command line: a variable the script does not read would be named in a warning."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('_SCRIPT_ENV')}
    env.update(DRY_RUN='1', PYTHON=sys.executable)
    (tmp_path / 'logs').mkdir()
    done = subprocess.run(['bash', '-c', dry_run_form(line)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, f'{page}: {line}\n{done.stderr[-2000:]}'
    assert 'warning:' not in done.stderr, f'{page}: {line}\n{done.stderr}'
    printed = ' '.join(done.stdout.split())
    assert printed, f'{page}: {line} printed no command'
    for variable, value in variables_of(line).items():
        if '$' in value or variable == 'DRY_RUN':
            continue
        flag = FLAG_OF_VARIABLE.get(variable)
        if variable == 'GPUS':  # one process per GPU
            expected = f'--nproc_per_node {len(value.split(","))}'
        elif flag and variable not in ('PHOTO', 'GEO'):
            expected = f'{flag} {value}'
        else:  # a list's first name (PHOTO=hue, ROWS="paper ...", PARAMS=lr) is in a flag or a run name
            expected = value.split()[0]
        assert expected in printed, f'{page}: {line}: {variable}={value} does not reach the command:\n{done.stdout}'

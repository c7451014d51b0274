"""Constants and plain functions the tests share (fixtures live in conftest.py): import them with
`from helpers import ...`; pytest puts tests/ on the import path."""
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Real-data fixtures in the repository (8 COCO val pairs, one Cityscapes val pair; tests/fixtures/README.md).
FIXTURES = Path(__file__).resolve().parent / 'fixtures'

#: Read-only real data beside the repository: <repo>/../shared/data.
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'

#: A tiny, fast training run (CPU, fp32, low resolution, 1 epoch, a narrow ResNet-18): --preset tiny.
TINY_FLAGS = ['--preset', 'tiny']

#: The shared run's flags: two epochs with the initial evaluations, bit-exact on the CPU (the
#: reference that every resumed run in test_reliability.py must reproduce), two final k-means.
TINY_RUN_FLAGS = ['--stuff', '--K_train', '15', '--K_test', '15', '--num_epoch', '2', '--eval_init',
                  '--deterministic', '--repeats', '2']


def error_lines(err: str) -> list:
    """The 'error: ...' lines of a command's stderr (`err`), in order."""
    return [line for line in err.splitlines() if line.startswith('error:')]


def one_error_line(err: str, *fragments) -> str:
    """The one 'error:' line of stderr (`err`), asserted to be the only one and to hold every fragment."""
    lines = error_lines(err)
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_one_error_line(code, err, *fragments):
    """A bad input's ending: exit code 2 and one 'error:' line on stderr (`err`) holding every fragment."""
    assert code == 2
    one_error_line(err, *fragments)


def evaluate_checkpoint(checkpoint: Path, out: Path, *flags) -> dict:
    """The metrics test_picie.py writes to `out` when it scores `checkpoint` with `flags` (in this
    process); it must exit 0."""
    import test_picie
    assert test_picie.cli(['--eval_path', str(checkpoint), '--out', str(out), *flags]) == 0
    return json.loads(out.read_text())


def copy_demo(tiny_demo: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny demo root (conftest's tiny_demo) at tmp_path/data, to damage."""
    root = tmp_path / 'data'
    shutil.copytree(tiny_demo, root)
    return root


def curated_ids(root: Path, split: str) -> list:
    """The image ids a COCO-layout root's curated list of `split` (train2017, val2017) names, in order."""
    from data.cocostuff import CURATED_NAME
    return (root / 'curated' / split / CURATED_NAME).read_text().split()


def file_hashes(folder: Path) -> dict:
    """{relative path: sha256} of every file under `folder`: equal results mean byte for byte unchanged."""
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}


def write_checkpoint(path: Path, model, classifiers: dict, eval_config: dict = None, epoch: int = 1) -> Path:
    """Save `model` as a toolkit checkpoint with the given classifiers ({name: centroids [K, C]})."""
    from utils.checkpoint import checkpoint_state
    optimizer = torch.optim.Adam(model.parameters())
    torch.save(checkpoint_state(model.config.to_dict(), model.state_dict(), optimizer.state_dict(), epoch,
                                {'seed': 1}, classifiers, eval_config or {}), path)
    return path


def original_state_key(key: str) -> str:
    """A state-dict key of this toolkit's ResNet-FPN as the original project's checkpoints name it:
    DataParallel's 'module.' prefix, and the original's decoder.layer<5-i> for decoder.lateral<i>."""
    if key.startswith('decoder.lateral'):
        key = f'decoder.layer{5 - int(key[len("decoder.lateral")])}' + key[len('decoder.lateralN'):]
    return 'module.' + key


def original_format_checkpoint(path: Path, seed: int, arch: str = 'resnet18', n_clusters: int = 27) -> Path:
    """A checkpoint in the original project's on-disk format with seeded random weights, drawn by
    the rule of the reference checkpoints whose original-code scores tests/fixtures/README.md gives:
    tensors in the original state dict's order (DataParallel 'module.' names; the original's
    decoder.layer<5-i> is this toolkit's lateral<i>, same order), from one generator seeded with
    `seed` (classifier 1: seed + 1, classifier 2: seed + 2): num_batches_tracked 0, running_var
    0.5 + U[0, 1), running_mean 0.1 N, BatchNorm weights 1 + 0.1 N, other vectors 0.05 N, conv
    weights N * sqrt(2 / fan_in); no 'args'."""
    from modules.networks import build_model

    def draw(shapes, generator_seed):
        generator = torch.Generator().manual_seed(generator_seed)
        out = {}
        for name, shape in shapes:
            if name.endswith('num_batches_tracked'):
                out[name] = torch.tensor(0)
            elif name.endswith('running_var'):
                out[name] = 0.5 + torch.rand(shape, generator=generator)
            elif name.endswith('running_mean'):
                out[name] = 0.1 * torch.randn(shape, generator=generator)
            elif len(shape) == 1 and ('bn' in name or 'downsample.1' in name) and name.endswith('weight'):
                out[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
            elif len(shape) == 1:
                out[name] = 0.05 * torch.randn(shape, generator=generator)
            else:
                fan_in = int(torch.tensor(shape[1:]).prod())
                out[name] = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
        return out

    model = build_model(arch)
    shapes = [(original_state_key(key), list(value.shape)) for key, value in model.state_dict().items()]
    head = [('module.weight', [n_clusters, model.feat_dim, 1, 1]), ('module.bias', [n_clusters])]
    n_params = sum(1 for name, _ in shapes if not name.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
    torch.save({'epoch': 10, 'state_dict': draw(shapes, seed), 'classifier1_state_dict': draw(head, seed + 1),
                'classifier2_state_dict': draw(head, seed + 2),
                'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-4, 'params': list(range(n_params))}]}}, path)
    return path


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it), for torchrun's rendezvous in DDP tests."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def run_script(name: str, env: dict, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """bash sh_files/NAME ARGS with `env` added to the environment (PYTHON: this interpreter), output captured."""
    full_env = {**os.environ, 'PYTHON': sys.executable, **{k: str(v) for k, v in env.items()}}
    return subprocess.run(['bash', str(REPO_ROOT / 'sh_files' / name), *args], capture_output=True, text=True,
                          env=full_env, cwd=REPO_ROOT, timeout=timeout)



def run_with_file_size_limit(script: str, limit_bytes: int, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """python SCRIPT ARGS (a script of the repository) where no file may grow past `limit_bytes`
    (as `ulimit -f` does; a write past it fails with EFBIG, as on a full disk), output captured."""
    import resource  # noqa: PLC0415 - POSIX only, and only these tests need it

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, str(REPO_ROOT / script), *map(str, args)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=timeout, preexec_fn=limit)


def made_once(tmp_path_factory, name: str, make: Callable[[Path], str | None]) -> tuple:
    """(folder, text): the folder `name` filled by make(folder), which may return a text to keep (e.g.
    a script's stdout); made once per test session even when pytest-xdist runs the session in
    several processes (`make test` does): the first process to arrive makes it under a file lock,
    the others wait and then read it. A session-scoped fixture whose result only gets read calls
    this, so its training runs once, not once per process."""
    if 'PYTEST_XDIST_WORKER' not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        return folder, make(folder)
    root = tmp_path_factory.getbasetemp().parent  # shared by the session's processes
    folder, done = root / name, root / f'{name}.done'
    with FileLock(str(root / f'{name}.lock')):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
            folder.mkdir()
            done.write_text(make(folder) or '')
    return folder, done.read_text()


@contextlib.contextmanager
def shallow_vits(depth: int = 2):
    """Within it, every ViT built without an explicit depth has `depth` transformer blocks (ViTConfig's
    default): weight files and checkpoints ~6x smaller, the same code. The depth is recorded in
    checkpoints, so a script or notebook that rebuilds one (outside this process) gets it right."""
    from modules.vit import ViTConfig
    defaults = ViTConfig.__init__.__defaults__  # (arch, out_dim, head, frozen, depth)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ViTConfig.__init__, '__defaults__', (*defaults[:-1], depth))
        yield


def train_commands(stdout: str) -> dict:
    """The train_picie.py command lines a script's DRY_RUN printed, parsed: {run_name: args}."""
    import config
    runs = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        if len(words) > 1 and words[1] == 'train_picie.py':
            args = config.parse_args(config.get_args_parser(), words[2:])
            runs[args.run_name] = args
    return runs


def run_records(run: Path) -> list:
    """The records of a run folder's metrics.jsonl, in order."""
    return [json.loads(line) for line in (run / 'metrics.jsonl').read_text().splitlines()]


class LocalServer:
    """An HTTP server on 127.0.0.1 (a thread of this process) serving the files of `folder` by name,
    with Range requests. `requests` records (file name, Range header) of every GET. Faults, for the
    next requests: `cut_at[name] = (offset, times)` sends the body up to byte `offset` and closes the
    connection, `times` times; `hold_at[name] = offset` sends up to `offset` and waits for `release`."""

    def __init__(self, folder: Path):
        import http.server
        import threading
        self.folder, self.requests, self.cut_at, self.hold_at = Path(folder), [], {}, {}
        self.release = threading.Event()
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                name = self.path.rsplit('/', 1)[-1]
                served.requests.append((name, self.headers.get('Range')))
                path = served.folder / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = int(self.headers['Range'][len('bytes='):].rstrip('-')) if self.headers.get('Range') else 0
                if start >= len(data) and start:
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
                self.send_header('Content-Length', str(len(data) - start))
                self.end_headers()
                end = len(data)
                offset, times = served.cut_at.get(name, (None, 0))
                if times:
                    served.cut_at[name] = (offset, times - 1)
                    end = max(start, offset)
                hold = served.hold_at.get(name)
                try:
                    if hold is not None and start < hold:
                        self.wfile.write(data[start:hold])
                        self.wfile.flush()
                        served.release.wait(120)
                        start = hold
                    self.wfile.write(data[start:end])
                except OSError:  # the client was killed
                    pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/'
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def write_zip(path: Path, members: dict) -> Path:
    """A zip archive of {member name: bytes} (stored, not compressed: JPEG and PNG bytes are)."""
    import zipfile
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def image_bytes(size: int, seed: int, fmt: str = 'JPEG', mode: str = 'RGB') -> bytes:
    """An image file's bytes: `size` x `size` pixels of seeded noise (incompressible, so large)."""
    import io

    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == 'RGB' else (size, size)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256 if mode == 'RGB' else 27, shape, dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()

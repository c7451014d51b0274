"""Test helper: run train_picie.py in this process and send a signal to itself at a chosen point.

    python tests/_killpoint.py POINT [train_picie.py arguments]

POINT is SIG@bar:DESC:N, fired when the progress bar DESC (e.g. 'epoch 1 train', 'init k-means',
'final k-means') has produced its N-th item (1-based), before that item is processed; or
SIG@save:N, fired at the N-th checkpoint.pth write after its temporary file is complete and
before it is renamed into place. SIG is KILL, TERM or INT, or INT-GROUP / TERM-GROUP for the whole
process group, DataLoader workers included (as Ctrl-C in a terminal, or a cluster scheduler's
SIGTERM, does; start the process in a new session). WAIT instead of SIG pauses the run there until
the file named by the environment variable KILLPOINT_GATE exists, after creating <that name>.paused
(a test waits for it, acts on the paused run, then creates the gate file to let the run go on).
Patching here keeps the kill points exact without any hook in the toolkit.
"""
import os
import signal
import sys
import time

import train_picie
from utils.runtime import Runtime


def fire(kind: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    if kind == "WAIT":
        gate = os.environ["KILLPOINT_GATE"]
        open(gate + ".paused", "w").close()
        while not os.path.exists(gate):
            time.sleep(0.05)
    elif kind.endswith("-GROUP"):
        os.killpg(os.getpgid(0), getattr(signal, f"SIG{kind[:-len('-GROUP')]}"))
    else:
        os.kill(os.getpid(), getattr(signal, f"SIG{kind}"))


def install(point: str) -> None:
    kind, where = point.split("@", 1)
    target, _, count = where.rpartition(":")
    count = int(count)
    if target.startswith("bar:"):
        desc = target[len("bar:"):]
        original_bar = Runtime.bar

        def bar(self, iterable, name, total=None):
            inner = original_bar(self, iterable, name, total)
            if name != desc:
                return inner

            def items():
                for number, item in enumerate(inner, 1):
                    if number == count:
                        fire(kind)
                    yield item
            return items()
        Runtime.bar = bar
    elif target == "save":
        original_replace = os.replace
        seen = [0]

        def replace(src, dst, *args, **kwargs):
            if str(dst).endswith("checkpoint.pth"):
                seen[0] += 1
                if seen[0] == count:
                    fire(kind)
            return original_replace(src, dst, *args, **kwargs)
        os.replace = replace
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    sys.exit(train_picie.cli(sys.argv[2:]))

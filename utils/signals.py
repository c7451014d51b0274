"""Graceful stop: SIGTERM and SIGINT ask a run to stop at the next batch boundary.

The handler only records the request; the passes notice it where it is safe to stop:
`check_stop()` runs before every batch a PassLoader yields (clustering, labelling,
evaluation, fresh k-means, BatchNorm calibration) and train_one_epoch's `should_stop` hook
runs after every optimiser step. The run then raises StopRequested, and train_picie.py
keeps the last epoch checkpoint (the interrupted epoch is redone on --restart, see
docs/reliability.md). A second Ctrl-C stops at once (KeyboardInterrupt); the last
checkpoint is intact either way, because checkpoints are only ever replaced atomically.
"""
import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_requested: int | None = None  # number of the first stop signal received, None if none


class StopRequested(Exception):
    """A stop signal arrived; raised at the next batch boundary after it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal_name(signum)}")


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def stop_requested() -> int | None:
    """The signal number of a pending stop request, or None."""
    return _requested


def check_stop() -> None:
    """Raise StopRequested if a stop signal has arrived (a no-op otherwise)."""
    if _requested is not None:
        raise StopRequested(_requested)


def request_stop(signum: int) -> None:
    """Record a stop request (what the handler does; also usable from code and tests)."""
    global _requested
    if _requested is None:
        _requested = signum


def ignore_interrupts(worker_id: int = 0) -> None:
    """DataLoader worker_init_fn: workers ignore SIGINT.

    Ctrl-C in a terminal signals the whole process group; a worker that died of it would
    turn the graceful stop of the main process into a 'worker exited unexpectedly' error.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class GracefulStop:
    """Context manager installing the stop handlers for SIGTERM and SIGINT (main thread only),
    restoring the previous handlers on exit."""

    def __init__(self):
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if _requested is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # second Ctrl-C: the user wants out now
            return
        request_stop(signum)
        # sys.stderr, not logging: a handler may run while the logging lock is held.
        sys.stderr.write(f"\n{signal_name(signum)} received: stopping at the next batch boundary "
                         "(Ctrl-C again to stop at once); the last checkpoint is kept\n")
        sys.stderr.flush()

    def __enter__(self) -> "GracefulStop":
        global _requested
        _requested = None
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> bool:
        global _requested
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        _requested = None
        return False

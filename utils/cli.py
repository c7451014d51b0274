"""The command-line wrapper of the entry scripts (train_picie.py, test_picie.py, predict.py): what
an error or a stop signal becomes, as one line and an exit code.

Exit codes: 0 done; 2 bad input (a UserError: a flag, a path, a file; its message names it and
the fix); 3 non-finite numbers (FloatingPointError); 128 + the signal number when stopped by
SIGTERM or SIGINT. Any other exception is a bug and keeps its traceback.

With a RunProgress (training), SIGTERM and SIGINT request a stop at the next batch boundary
(utils/signals.py: the loop checks stop_requested) and the message says what is kept and how to
resume; without one (evaluation, prediction: nothing to resume), Ctrl-C stops at once.
"""
import contextlib
import signal
from collections.abc import Callable

from utils import dist
from utils.errors import UserError
from utils.run import RunProgress, setup_logging
from utils.signals import GracefulStop, StopRequested, signal_name, stop_requested


def run_cli(body: Callable[[], object], progress: RunProgress | None = None, nonfinite_hint: str = "") -> int:
    """Run body() (the script's work, flags already parsed or parsed inside) and return the exit
    code; every error a user can fix is logged as one 'error: ...' line on stderr. nonfinite_hint
    follows the message of a FloatingPointError (likely causes and flags)."""
    log = setup_logging()  # to the console; into a run's train.log too once its folder exists
    with GracefulStop() if progress is not None else contextlib.nullcontext():
        try:
            body()
        except StopRequested as exc:
            log.error("%s", _stopped(progress, exc.signum))
            return 128 + exc.signum
        except KeyboardInterrupt:
            log.error("%s", _stopped(progress, signal.SIGINT))
            return 128 + signal.SIGINT
        except FloatingPointError as exc:  # a non-finite loss, or non-finite k-means centroids
            kept = f"; {progress.kept()}" if progress is not None else ""
            log.error("%s%s.%s", exc, kept, f" {nonfinite_hint}" if nonfinite_hint else "")
            return 3
        except UserError as exc:
            log.error("%s", exc)
            return 2
        except Exception:
            # A stop signal sent to the whole process group (e.g. by a cluster scheduler) also kills the
            # DataLoader workers, which surfaces here as a worker error: it is still the requested stop.
            if stop_requested():
                log.error("%s", _stopped(progress, stop_requested()))
                return 128 + stop_requested()
            raise
        finally:
            dist.cleanup()
    return 0


def _stopped(progress: RunProgress | None, signum: int) -> str:
    return progress.stop_message(signum) if progress is not None else f"stopped by {signal_name(signum)}"

"""--restart: a run continues with the settings it recorded, except the flags given now; a given
flag of role RESULT (config/flags.py) that differs from the run's stops the restart unless
--accept_changes."""
import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.flags import RESULT, ROLES, FlagError
from config.from_args import default_run_name, switches_of_record
from config.parsers import build_parser, class_count_defaults, preset_only_parser
from config.presets import preset_defaults
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.run import CHECKPOINT_NAME

# Flags that describe one command, not the run: never taken from a run's record on --restart.
INVOCATION_FLAGS = frozenset({"restart", "overwrite", "accept_changes", "eval_only", "eval_path", "preset"})


def restart_args(args: argparse.Namespace, argv: Sequence[str], recorded: dict[str, Any]):
    """The flags of `--restart`: the recorded run's (`recorded`, a checkpoint's "args"), except those
    given now on the command line or by --preset. Returns (namespace, conflicts, changes): conflicts
    are the RESULT flags given with another value than the run's, changes the other given flags
    that differ, each (flag, now, recorded)."""
    argv = list(argv)
    recorded = switches_of_record(recorded)
    typed = vars(build_parser("train_picie.py", "train", False, suppress_defaults=True).parse_args(argv))
    chosen, _ = preset_only_parser().parse_known_args(argv)
    given = dict(typed)
    if chosen.preset:
        given = {**{k: v for k, v in preset_defaults(chosen.preset, typed).items() if k in ROLES}, **typed}
        # As parse_args: --coco_classes 171 replaces the preset's K values (unless typed).
        given.update({k: v for k, v in class_count_defaults(given).items() if k not in typed})
    merged = dict(vars(args))
    for dest in ROLES:
        if dest in recorded and dest not in given and dest not in INVOCATION_FLAGS and dest in merged:
            merged[dest] = recorded[dest]
    if merged.get("precision") == "auto" and "precision" not in given and recorded.get("autocast"):
        merged["precision"] = recorded["autocast"]  # what auto chose when the run started: it must not change
    conflicts, changes = [], []
    for dest in sorted(given):
        if dest in INVOCATION_FLAGS or dest not in recorded:
            continue
        now, then = merged[dest], recorded[dest]
        if (list(now) if isinstance(now, tuple) else now) != (list(then) if isinstance(then, tuple) else then):
            (conflicts if ROLES.get(dest) == RESULT else changes).append((dest, now, then))
    return argparse.Namespace(**merged), conflicts, changes


def resolve_restart(args, argv, log) -> object:
    """--restart continues the run its checkpoint records: its settings, except the flags given now.
    A given flag that changes results and differs stops the restart (unless --accept_changes)."""
    run_folder = Path(args.save_root) / (args.run_name or default_run_name(args))
    if not (args.restart and (run_folder / CHECKPOINT_NAME).is_file()):
        return args
    recorded = restart_checkpoint(run_folder).get("args", {})
    merged, conflicts, changes = restart_args(args, argv, recorded)
    described = "; ".join(f"--{flag} {now} (the run: {then})" for flag, now, then in conflicts)
    if conflicts and not args.accept_changes:
        raise FlagError(f"--restart of {run_folder} with settings that change its results: {described}; drop them "
                        "to continue the run as recorded, pass --accept_changes to continue with them, or start "
                        "another run (--run_name)")
    for flag, now, then in conflicts:
        log.warning("--accept_changes: --%s is %s but the run used %s; the resumed epochs differ from an "
                    "uninterrupted run", flag, now, then)
    for flag, now, then in changes:
        log.info("--restart: --%s is now %s (the run used %s; this does not change results)", flag, now, then)
    return merged


def restart_checkpoint(run_folder: Path) -> dict:
    """The checkpoint --restart continues; an unreadable one (truncated by a full disk or a copy cut
    short) is one line with the ways on: the newest readable checkpoint_epoch<N>.pth (--keep_checkpoints)
    to copy over it, or --overwrite to start the run over."""
    path = run_folder / CHECKPOINT_NAME
    try:
        return load_checkpoint(path)
    except CheckpointError:
        kept = sorted(run_folder.glob("checkpoint_epoch*.pth"), key=_epoch_of, reverse=True)
        good = next((p for p in kept if _readable(p)), None)
        resume = f"copy {good} over it to resume from that epoch, or " if good else ""
        raise CheckpointError(f"--restart: {path} is not a readable checkpoint (truncated or damaged); {resume}pass "
                              "--overwrite instead of --restart to start the run over (its files are kept in "
                              "previous_*/)") from None


def _epoch_of(path: Path) -> int:
    digits = path.stem.removeprefix("checkpoint_epoch")
    return int(digits) if digits.isdigit() else -1


def _readable(path: Path) -> bool:
    try:
        load_checkpoint(path)
        return True
    except CheckpointError:
        return False

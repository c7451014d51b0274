"""python -m config: the values flags resolve to (--get), the flags by role (--roles), or the memory
a run of these flags on its data root will need (--memory)."""
import argparse
import sys
from collections.abc import Sequence

from config.flags import roles_markdown
from config.from_args import settings_from_args
from config.memory import memory_report
from config.parsers import get_args_parser, parse_args
from utils.cli import run_cli
from utils.runtime import script_main


def main(argv: Sequence[str] | None = None) -> int:
    """python -m config [--preset NAME] [flags] --get NAME [NAME ...]: print the values the
    flags resolve to (one per line), e.g. for shell scripts that need a preset's base values;
    python -m config --roles: the flags by role, as docs/configuration.md shows them;
    python -m config [--preset NAME] [flags] --memory: the memory estimate of training and evaluation
    on --data_root, by part, and whether it fits here (nothing is trained or written)."""
    if argv is None:
        argv = sys.argv[1:]
    if list(argv) == ["--roles"]:
        print(roles_markdown(), end="")
        return 0
    parser = argparse.ArgumentParser("python -m config", parents=[get_args_parser(add_help=False)],
                                     description=main.__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--get", nargs="+", metavar="NAME", help="flag names (dest form, e.g. K_train)")
    action.add_argument("--memory", action="store_true",
                        help="print the memory estimate of these flags on --data_root (docs/measurements.md)")
    args = parse_args(parser, argv)
    if args.memory:
        return run_cli(lambda: print("\n".join(memory_report(settings_from_args(args)))))
    for name in args.get:
        if not hasattr(args, name):
            parser.error(f"--get {name}: not a flag of train_picie.py")
        value = getattr(args, name)
        print(" ".join(map(str, value)) if isinstance(value, (list, tuple)) else value)
    return 0


if __name__ == "__main__":
    script_main(main)

"""python -m config: the values flags resolve to (--get), or the flags by role (--roles)."""
import argparse
import sys
from typing import Optional, Sequence

from config.flags import roles_markdown
from config.parsers import get_args_parser, parse_args
from utils.runtime import script_main


def main(argv: Optional[Sequence[str]] = None) -> int:
    """python -m config [--preset NAME] [flags] --get NAME [NAME ...]: print the values the
    flags resolve to (one per line), e.g. for shell scripts that need a preset's base values;
    python -m config --roles: the flags by role, as docs/configuration.md shows them."""
    if argv is None:
        argv = sys.argv[1:]
    if list(argv) == ["--roles"]:
        print(roles_markdown(), end="")
        return 0
    parser = argparse.ArgumentParser("python -m config", parents=[get_args_parser(add_help=False)],
                                     description=main.__doc__)
    parser.add_argument("--get", nargs="+", required=True, metavar="NAME", help="flag names (dest form, e.g. K_train)")
    args = parse_args(parser, argv)
    for name in args.get:
        if not hasattr(args, name):
            parser.error(f"--get {name}: not a flag of train_picie.py")
        value = getattr(args, name)
        print(" ".join(map(str, value)) if isinstance(value, (list, tuple)) else value)
    return 0


if __name__ == "__main__":
    script_main(main)

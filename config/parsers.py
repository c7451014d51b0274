"""The parsers of the scripts, built from the flag table (config/flags.py), with --preset applied
as defaults so that flags given on the command line win."""
import argparse
import difflib
import sys
from typing import Dict, Optional, Sequence

from config.flags import FLAGS
from config.presets import PRESETS


class Parser(argparse.ArgumentParser):
    """argparse with a suggestion for a misspelled flag and a one-line error."""

    def error(self, message: str):
        unknown = [w for w in message.replace(",", " ").split() if w.startswith("--")]
        known = [o for action in self._actions for o in action.option_strings]
        hints = []
        for word in unknown:
            close = difflib.get_close_matches(word.split("=")[0], known, n=1)
            if close:
                hints.append(f"{word}: did you mean {close[0]}?")
        self.exit(2, f"{self.prog}: error: {message}{'; ' + '; '.join(hints) if hints else ''} "
                     f"(--help lists every flag)\n")


def build_parser(prog: str, scope: str, add_help: bool, parents: Sequence[argparse.ArgumentParser] = (),
           suppress_defaults: bool = False) -> Parser:
    """A parser with the flags of `scope`, after those of `parents` (flags a parent has are not added
    again); suppress_defaults leaves out every flag not given (to tell what the command line set
    from what a default or a run's record would)."""
    parser = Parser(prog, add_help=add_help, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                    parents=list(parents))
    inherited = {option for parent in parents for action in parent._actions for option in action.option_strings}
    groups: Dict[str, argparse._ArgumentGroup] = {}
    for flag in FLAGS:
        if scope in flag.scope and not inherited.intersection(flag.names):
            group = groups.setdefault(flag.group, parser.add_argument_group(flag.group))
            kwargs = dict(flag.kwargs, default=argparse.SUPPRESS) if suppress_defaults else flag.kwargs
            group.add_argument(*flag.names, **kwargs)
    return parser


def get_args_parser(add_help: bool = True) -> Parser:
    """The parser of train_picie.py (and of the tools that train, through parents=)."""
    return build_parser("train_picie.py", "train", add_help)


def get_test_parser(add_help: bool = True) -> Parser:
    """The parser of test_picie.py: data, runtime, k-means and evaluation flags (no training flags)."""
    return build_parser("test_picie.py", "test", add_help)


def get_predict_parser(add_help: bool = True) -> Parser:
    """The parser of predict.py: test_picie.py's flags (checkpoint, --res, runtime, --flip, --crf;
    its data and k-means flags are accepted and unused) and the flags of scope predict. --res
    defaults to None here: the checkpoint's evaluation resolution."""
    parser = build_parser("predict.py", "predict", add_help, parents=[get_test_parser(add_help=False)])
    parser.set_defaults(res=None)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse argv after applying `--preset` (if given) as defaults, so flags on the command line win."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen, _ = preset_only_parser().parse_known_args(argv)
    if chosen.preset:
        dests = {action.dest for action in parser._actions}
        parser.set_defaults(**{k: v for k, v in PRESETS[chosen.preset].items() if k in dests})
    return parser.parse_args(argv)




def preset_only_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    preset = next(flag for flag in FLAGS if flag.dest == "preset")
    parser.add_argument(*preset.names, **preset.kwargs)
    return parser


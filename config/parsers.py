"""The parsers of the scripts, built from the flag table (config/flags.py), with --preset applied
as defaults so that flags given on the command line win; then the defaults that depend on other
flags: K of --coco_classes 171, input sizes fitted to --arch's feature grid. Also the flags the
dataset preparation tools share (add_fetch_flags; tools/get_coco.py, tools/get_cityscapes.py)."""
import argparse
import difflib
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.flags import FLAGS
from config.presets import DEMO_SETS, PRESETS, preset_defaults
from data.cocostuff_classes import fine171_names
from modules.networks import feature_stride
from modules.vit import round_to_patch
from utils.fetch import FetchSettings


class Parser(argparse.ArgumentParser):
    """argparse with a suggestion for a misspelled flag and a one-line error."""

    def error(self, message: str):
        known = {o: action for action in self._actions for o in action.option_strings}
        invalid = re.fullmatch(r"argument (\S+): invalid (int|float) value: (.*)", message)
        if invalid:  # argparse's "argument --K_train: invalid int value: 'ten'": the flag first, then the fix
            flag, kind, value = invalid.groups()
            example = known[flag].default if flag in known else None
            fix = f"give {'a whole number' if kind == 'int' else 'a number'}" + (
                f", e.g. {flag} {example}" if isinstance(example, (int, float)) and not isinstance(example, bool)
                else "")
            self.exit(2, f"{self.prog}: error: {flag}: invalid {kind} value {value} ({fix})\n")
        hints = []
        # Only the words that are not flags of this parser get a suggestion (a valid flag named in
        # "argument --arch: invalid choice" is not misspelled).
        for word in (w.rstrip(":") for w in message.replace(",", " ").split() if w.startswith("--")):
            if word.split("=")[0] in known:
                continue
            close = difflib.get_close_matches(word.split("=")[0], list(known), n=1)
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
    groups: dict[str, argparse._ArgumentGroup] = {}
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
    """The parser of test_picie.py: data, runtime, k-means and evaluation flags (no training flags).
    --save_root defaults to None here: the metrics are written only where --save_root or --out says."""
    parser = build_parser("test_picie.py", "test", add_help)
    parser.set_defaults(save_root=None)
    return parser


def get_predict_parser(add_help: bool = True) -> Parser:
    """The parser of predict.py: test_picie.py's flags (checkpoint, --res, runtime, --flip, --crf;
    its data and k-means flags are accepted and unused) and the flags of scope predict. --res
    defaults to None here: the checkpoint's evaluation resolution."""
    parser = build_parser("predict.py", "predict", add_help, parents=[get_test_parser(add_help=False)])
    parser.set_defaults(res=None)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse argv after applying `--preset` (if given) as defaults, so flags on the command line win."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen, _ = preset_only_parser().parse_known_args(argv)
    dests = {action.dest for action in parser._actions}
    if chosen.preset:
        values = preset_defaults(chosen.preset, given_flags(parser, argv))
        parser.set_defaults(**{k: v for k, v in values.items() if k in dests})
    args = parser.parse_args(argv)
    counts = {k: v for k, v in class_count_defaults(vars(args)).items() if k in dests}
    if counts:  # --coco_classes 171: K defaults to the class count; a second pass lets given --K flags win
        parser.set_defaults(**counts)
        args = parser.parse_args(argv)
    if hasattr(args, "arch"):
        fit_defaults_to_network(args, given_flags(parser, argv))
    return args


def parse_demo_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """tools/make_demo.py's flags, with `--preset demo|tiny`'s data (its data_root as --root, its sizes
    and seed: config/presets.py DEMO_SETS) as defaults, so that flags given beside it win."""
    args = parser.parse_args(argv)
    if args.preset:
        parser.set_defaults(root=PRESETS[args.preset]["data_root"], **DEMO_SETS[args.preset])
        args = parser.parse_args(argv)
    return args


_NOT_GIVEN = object()


def given_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set:
    """The dests the command line `argv` sets itself (not by a default or --preset): argparse
    fills in a default only where the namespace has no value yet, so a namespace of markers keeps
    the marker exactly where no flag was given."""
    marked = argparse.Namespace(**{a.dest: _NOT_GIVEN for a in parser._actions if a.dest != argparse.SUPPRESS})
    parser.parse_args(list(argv), namespace=marked)
    return {dest for dest, value in vars(marked).items() if value is not _NOT_GIVEN}


def fit_defaults_to_network(args: argparse.Namespace, given: set) -> None:
    """Defaults (the flags' or --preset's) that do not fit the feature grid of --arch are fitted to it,
    with one log line each: --res, --res1, --res2 down to a multiple of the feature stride (at least
    32 px), --kmeans_pixels_per_image down to the cells of one image. A value given on the command
    line is left as given (check_args then names it when it does not fit)."""
    arch, stride = args.arch, feature_stride(args.arch)
    for name in ("res1", "res2", "res"):
        value = getattr(args, name)  # the parsers with --arch have all three
        if name in given or value is None or (value >= 32 and value % stride == 0):
            continue
        fitted = max(round_to_patch(value, stride), -(-32 // stride) * stride)
        setattr(args, name, fitted)
        logging.getLogger("picie").info("--%s %d (the default) is not a multiple of %d, the feature stride of --arch "
                                        "%s: using %d", name, value, stride, arch, fitted)
    cells = (min(args.res1, args.res or args.res1) // stride) ** 2
    if "kmeans_pixels_per_image" not in given and not args.kmeans_init_all_pixels and \
            args.kmeans_pixels_per_image > cells:
        logging.getLogger("picie").info("--kmeans_pixels_per_image %d (the default) is more than the %d feature cells "
                                        "of an image with --arch %s: using %d", args.kmeans_pixels_per_image, cells,
                                        arch, cells)
        args.kmeans_pixels_per_image = cells


def class_count_defaults(values: dict[str, Any]) -> dict[str, int]:
    """{K_train, K_test: the evaluated class count} for --coco_classes 171 (171 classes, 91 with --stuff,
    80 with --thing), which replaces the default 27 and a preset's value (both the 27-class count);
    {} for the 27 classes, whose K defaults stay the paper's."""
    if values.get("coco_classes") != 171:
        return {}
    stuff, thing = values.get("stuff"), values.get("thing")
    if stuff is None and thing is None:
        stuff = thing = True
    n = len(fine171_names(bool(stuff), bool(thing)))
    return {"K_train": n, "K_test": n}


def preset_only_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    preset = next(flag for flag in FLAGS if flag.dest == "preset")
    parser.add_argument(*preset.names, **preset.kwargs)
    return parser


def add_fetch_flags(parser, default_root: str, downloads: bool) -> None:
    """The flags every preparation tool shares; `downloads`: the archives have public addresses."""
    parser.add_argument("--root", type=Path, default=Path(default_root), metavar="DIR",
                        help="the data root to lay the dataset out in (default: %(default)s)")
    parser.add_argument("--from", dest="from_dir", type=Path, default=None, required=not downloads, metavar="DIR",
                        help="a folder holding archives you already have; they are read in place"
                             + ("" if not downloads else " (the others are downloaded)"))
    if downloads:
        parser.add_argument("--archive_dir", type=Path, default=None, metavar="DIR",
                            help="where downloaded archives are kept (default: ROOT/archives)")
        parser.add_argument("--delete_archives", action="store_true",
                            help="delete each downloaded archive once it is unpacked and checked")
        parser.add_argument("--base_url", default=None, metavar="URL",
                            help="a mirror holding every archive under its file name (default: the official "
                                 "addresses)")
        parser.add_argument("--retries", type=int, default=FetchSettings.retries,
                            help="how often a dropped download is resumed before giving up (default: %(default)s)")
        parser.add_argument("--retry_wait_s", type=float, default=FetchSettings.retry_wait_s,
                            help="seconds to wait before resuming a dropped download (default: %(default)s)")
    else:  # archives read in place: nothing is downloaded, kept or deleted
        parser.set_defaults(archive_dir=None, delete_archives=False, base_url=None, retries=FetchSettings.retries,
                            retry_wait_s=FetchSettings.retry_wait_s)
    parser.add_argument("--expect_counts", nargs="+", metavar="SPLIT=N", default=None,
                        help="the number of images each split must hold (default: the published dataset's); "
                             "for a subset or a test")
    parser.add_argument("--free_bytes", type=int, default=None, metavar="N",
                        help="act as if the disk had only this many bytes free (to try the space checks)")

"""Write ``fine_to_coarse_dict.pickle`` from the class table in ``data/cocostuff_classes.py``.

The original PiCIE code expects this file in the dataset root. It holds
``{'fine_index_to_coarse_index': {0..181: 0..26}, 'fine_name_to_coarse_name': {name: name}}``;
this tool regenerates it from the table kept in code, so nobody needs the original download.

Usage::

    python -m tools.write_fine_to_coarse [--out PATH]
"""

import argparse
import pickle
import sys
from pathlib import Path

from config.from_args import output_path
from data.cocostuff_classes import PICKLE_NAME, fine_to_coarse_dict
from utils.cli import run_cli
from utils.files import write_bytes

REPO_ROOT = Path(__file__).resolve().parents[1]

# Protocol 2 is readable by Python 2 and 3 alike, like the original (protocol 0) file, while
# staying compact; readers only see the unpickled dicts, so the protocol is not part of the format.
PICKLE_PROTOCOL = 2


def write_fine_to_coarse(out: Path) -> Path:
    """Write the fine -> coarse mapping pickle to ``out`` (parent folders are created).

    Args:
        out: destination file.

    Returns:
        The path written.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out, pickle.dumps(fine_to_coarse_dict(), protocol=PICKLE_PROTOCOL))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Write the COCO-Stuff fine -> coarse class mapping pickle used by PiCIE.')
    parser.add_argument('--out', type=Path, default=REPO_ROOT / PICKLE_NAME,
                        help=f'output file (default: {PICKLE_NAME} at the repository root)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    args = parse_args(argv)
    return run_cli(lambda: print(f'wrote {write_fine_to_coarse(output_path(args))}'))  # a failed write: one line


if __name__ == '__main__':
    sys.exit(main())

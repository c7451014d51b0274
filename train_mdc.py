"""Train the MDC baseline (modified DeepCluster, PiCIE paper Table 1): the original project's
entry point name, kept so its commands run unchanged. Same flags as train_picie.py, whose loop
it runs with --method mdc (one view, own classifier re-initialised every epoch; --nonparametric
trains against the frozen centroids instead).

    python train_mdc.py --data_root datasets/coco --save_root results [--nonparametric] [flags]
"""
import sys

import train_picie


def cli(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--method" in argv:
        print("error: train_mdc.py always trains --method mdc; use train_picie.py --method ... for another method",
              file=sys.stderr)
        return 2
    return train_picie.cli(["--method", "mdc", *argv])


if __name__ == "__main__":
    sys.exit(cli())

"""The end of `make demo` (sh_files/demo.sh): a demo run's scores, where its files are, which kind of
CPU and precision it ran on, and the scores measured on that kind (docs/measurements/demo_expected.json,
the table docs/demo.md shows), so that a student can tell a working set-up from a broken one.

    python -m tools.demo_summary results/demo

The scores depend on the precision the network trained in: bf16 autocast (what `--precision auto`
picks on a CPU with bf16 units that measures bf16 faster) and float32 (a CPU without bf16 units, or
`--precision fp32`) give different clusterings from the same seed. The run's config.json records
which one ran ("autocast"); the expected values are those measured in it.
"""
import argparse
import json
import re
from pathlib import Path

from config.from_args import run_folder_arg
from utils.cli import run_cli
from utils.errors import UserError
from utils.runtime import cpu_has_bf16, script_main

EXPECTED_PATH = Path(__file__).resolve().parents[1] / "docs" / "measurements" / "demo_expected.json"
# The rows of the table, in the order printed: (key of final_metrics.json / the table, label).
ROWS = (("untrained", "untrained network as initialised"),
        ("untrained_bn_calibrated", "untrained, BatchNorm statistics set"))


def load_expected(path: Path = EXPECTED_PATH) -> dict:
    """The measured table: {"kinds": {precision: {"cpu", "how", "seeds": {seed: {row: [acc, mIoU]}}}}}."""
    return json.loads(Path(path).read_text())


def epochs_row(epochs: int) -> str:
    return f"epochs_{epochs}"


def kind_of_run(autocast: str, has_bf16: bool) -> str:
    """One line naming the CPU kind and the precision the run trained in."""
    cpu = "a CPU with bf16 units" if has_bf16 else "a float32-only CPU (no bf16 units)"
    if autocast == "bf16":
        return f"{cpu}, trained in bf16 autocast"
    why = "--precision auto found bf16 no faster, or --precision fp32" if has_bf16 else "--precision auto"
    return f"{cpu}, trained in float32 ({why})"


def expectation(expected: dict, autocast: str, seed: int, epochs: int) -> list[str]:
    """Lines saying what the table measured for this precision, seed and length (mIoU of PiCIE), and what
    was reported from other machines of the kind."""
    kind = expected["kinds"].get(autocast)
    row = epochs_row(epochs)
    if kind is None:
        return [f"expect: no demo measured in {autocast}; the table has {', '.join(expected['kinds'])} (docs/demo.md)"]
    measured = {int(s): rows[row][1] for s, rows in kind["seeds"].items() if rows.get(row)}
    if not measured:
        lengths = sorted({r for rows in kind["seeds"].values() for r in rows if r.startswith("epochs_")})
        return [f"expect: no {epochs}-epoch demo measured in {autocast} "
                f"(docs/demo.md has {', '.join(lengths) or 'none'})"]
    lines = [f"expect there ({kind['cpu']}; docs/demo.md), PiCIE after {epochs} epoch{'s' * (epochs != 1)}: "
             + ", ".join(f"seed {s} {m:.2f}" for s, m in sorted(measured.items()))
             + (f" mIoU (range {min(measured.values()):.2f}-{max(measured.values()):.2f})" if len(measured) > 1
                else " mIoU")]
    for report in kind.get("reported", []):
        if report["epochs"] == epochs:
            where = report["where"].split(":")[0]
            lines.append(f"reported on {where}: seed {report['seed']} {report['mIoU']:.2f} mIoU")
    if seed in measured:
        # How far other machines of the kind landed from the table for this seed: measured, not guessed.
        others = [r["mIoU"] for r in kind.get("reported", []) if r["seed"] == seed and r["epochs"] == epochs]
        apart = (f"other machines of the kind gave {', '.join(f'{o:.2f}' for o in others)}, up to "
                 f"{max(abs(o - measured[seed]) for o in others):.1f} apart" if others
                 else "another machine of the kind may land elsewhere")
        lines.append(f"this run is seed {seed}: expect about {measured[seed]:.2f} mIoU ({apart}: docs/demo.md); "
                     "seeds differ by several, so compare settings over 3 seeds")
    return lines


def trained_on(run: Path) -> str:
    """The device of the run's first log line ("PiCIE run ... on cpu, autocast ..."); "cpu" if unknown."""
    log_path = run / "train.log"
    first = log_path.read_text().splitlines()[:1] if log_path.is_file() else []
    match = re.search(r" on (\S+), autocast ", first[0]) if first else None
    return match.group(1).split(":")[0] if match else "cpu"


def summary(run: Path, expected: dict, has_bf16: bool) -> str:
    """The text printed at the end of the demo."""
    try:
        final = json.loads((run / "final_metrics.json").read_text())
        config = json.loads((run / "config.json").read_text())
    except FileNotFoundError as exc:
        raise UserError(f"{exc.filename}: not found; is {run} a finished demo run folder "
                        "(./sh_files/demo.sh)?") from None
    test_path = run / "test_metrics.json"
    test = json.loads(test_path.read_text()) if test_path.is_file() else None
    lines = [f"\n=== PiCIE demo results ({final['n_val_images']} val images, fresh k-means on the train images, "
             f"mean of {final['repeats']} k-means runs) ==="]
    for key, label in ROWS:
        if final.get(key):
            lines.append(f"{label:<40} acc {final[key]['acc']:6.2f}   mIoU {final[key]['mIoU']:6.2f}")
    trained = f"PiCIE after {final['epochs']} epochs"
    lines.append(f"{trained:<40} acc {final['acc']:6.2f}   mIoU {final['mIoU']:6.2f}"
                 f"  (+- {final['mIoU_std']:.2f})")
    if test:
        lines.append(f"{'checkpoint' + chr(39) + 's own view-1 classifier':<40} acc {test['acc']:6.2f}   "
                     f"mIoU {test['mIoU']:6.2f}")
    lines += [f"\nrun folder:    {run}/  (config.json, metrics.jsonl, train.log, checkpoint.pth, final_metrics.json)",
              f"cluster maps:  {run}/cluster_maps/*.png"]
    autocast = config.get("autocast") or "fp32"
    lines.append(f"\nran on: {kind_of_run(autocast, has_bf16)}")
    device = trained_on(run)
    if device != "cpu":
        lines.append(f"expect: the table was measured on CPUs; this run trained on {device}")
    else:
        lines += expectation(expected, autocast, int(config.get("seed", 1)), int(final["epochs"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a demo run folder (results/demo)")
    args = parser.parse_args(argv)
    return run_cli(lambda: print(summary(run_folder_arg(args), load_expected(), cpu_has_bf16())))


if __name__ == "__main__":
    script_main(main)

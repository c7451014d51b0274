"""One row per setting over its training seeds: final scores, paired differences to a reference
row, and (optionally) the invariance measurements, each as mean ± sample std with the per-seed values.

    python -m tools.seed_summary results/ablate_components_demo/* --reference paper \
        --invariance reports/ablate_components_demo/invariance.json --out reports/ablate_components_demo/seeds

Runs are grouped when their settings differ only in --seed (tools/compare_runs.py's rule); a group
is named after its folders with the `_seed<N>` suffix that sh_files/ablate_components.sh gives them
removed. The std is the sample std (ddof 1): with three seeds the population std of
tools/compare_runs.py is 18% smaller. A row's difference to --reference is taken seed by seed
(the same seed gives the same initial weights and the same transform draws), so the per-seed
differences show whether a difference holds on every seed or only on average. Writes OUT.md and
OUT.csv (scores) and, with --invariance, OUT_invariance.csv.
"""
import argparse
import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from config.from_args import seed_summary_settings
from config.settings import SeedSummarySettings
from tools.compare_runs import Run, load_runs, markdown_table, name_the_holdout, scored_on, seed_groups
from utils.cli import run_cli
from utils.errors import UserError
from utils.files import write_text
from utils.runtime import script_main

SEED_SUFFIX = re.compile(r"_seed\d+$")


def group_name(group: Sequence[Run]) -> str:
    names = {SEED_SUFFIX.sub("", run.path.name) for run in group}
    return names.pop() if len(names) == 1 else " + ".join(run.path.name for run in group)


def mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "—"
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return f"{np.mean(values):.2f} ± {sd:.2f}"


def per_seed(values: dict[int, float]) -> str:
    return ", ".join(f"{values[s]:.2f}" for s in sorted(values)) or "—"


def final_by_seed(group: Sequence[Run], key: str) -> dict[int, float]:
    return {int(run.config["seed"]): float(run.final[key]) for run in group
            if run.final and run.final.get(key) is not None}


def score_rows(groups: dict[str, list[Run]], reference: str | None) -> list[dict[str, str]]:
    ref = final_by_seed(groups[reference], "mIoU") if reference else {}
    rows = []
    for name, group in groups.items():
        miou, acc = final_by_seed(group, "mIoU"), final_by_seed(group, "acc")
        row = {"row": name, "seeds": ", ".join(str(s) for s in sorted(miou)) or "—",
               "mIoU per seed": per_seed(miou), "mIoU mean ± sd": mean_sd(list(miou.values())),
               "acc per seed": per_seed(acc), "acc mean ± sd": mean_sd(list(acc.values()))}
        bn = {int(run.config["seed"]): run.init_scores("init_bn")["mIoU"] for run in group
              if run.init_scores("init_bn")}
        if bn:
            row["untrained+BN mIoU mean ± sd"] = mean_sd(list(bn.values()))
        if reference:
            # Only seeds both rows finished: a missing seed must not shift the difference.
            diffs = {s: miou[s] - ref[s] for s in miou if s in ref}
            row[f"mIoU − {reference}, per seed"] = per_seed(diffs) if name != reference else "—"
            row[f"mIoU − {reference}, mean ± sd"] = mean_sd(list(diffs.values())) if name != reference else "—"
        rows.append(row)
    return rows


def invariance_rows(groups: dict[str, list[Run]], results: dict[str, dict[str, float]]) -> list[dict[str, str]]:
    """One row per probe, one column per group: mean ± sd over the group's runs measured (by folder name)."""
    probes = list(next(iter(results.values())))
    rows = []
    for probe in probes:
        row = {"probe": probe}
        for name, group in groups.items():
            values = [results[run.path.name][probe] for run in group if run.path.name in results]
            row[name] = mean_sd(values)
        rows.append(row)
    return rows


def markdown(rows: Sequence[dict[str, str]]) -> str:
    return markdown_table(rows, list(rows[0])) + "\n"


def write_csv(rows: Sequence[dict[str, str]], path: Path) -> None:
    """The rows as a CSV file, whole or not at all (utils/files.py)."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def summarize(settings: SeedSummarySettings) -> None:
    """Print the table over seeds (and the invariance table), and write them with --out."""
    runs = load_runs(settings.runs)
    groups = {group_name(group): group for group in seed_groups(runs)}
    if settings.reference is not None and settings.reference not in groups:
        raise UserError(f"--reference {settings.reference}: no such row; rows: {', '.join(groups)}")
    scores = name_the_holdout(score_rows(groups, settings.reference), runs)
    text = (f"Final scores over training seeds (mean ± sample std), scored on {scored_on(runs)}\n\n"
            + markdown(scores))
    inv = None
    if settings.invariance is not None:
        try:
            results = json.loads(settings.invariance.read_text())["results"]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"--invariance {settings.invariance}: not an OUT.json of python -m tools.invariance "
                            f"(no 'results'); give the .json file it wrote") from None
        inv = invariance_rows(groups, results)
        text += "\nCells whose cluster is unchanged, % (mean ± sample std over seeds)\n\n" + markdown(inv)
    print(text, end="")
    if settings.out is not None:
        out = settings.out
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text(out.with_suffix(".md"), text)
            write_csv(scores, out.with_suffix(".csv"))
            if inv is not None:
                write_csv(inv, out.parent / f"{out.name}_invariance.csv")
        except OSError as exc:  # the folder itself (a file written is whole or not at all: utils/files.py)
            raise UserError(f"--out {out}: cannot write ({exc.strerror}); choose a writable folder") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser("seed_summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--reference", default=None, help="the row the others are compared with, seed by seed")
    parser.add_argument("--invariance", type=Path, default=None, help="tools.invariance's OUT.json for these runs")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.md, OUT.csv (and OUT_invariance.csv)")
    args = parser.parse_args(argv)
    return run_cli(lambda: summarize(seed_summary_settings(args)))  # bad input: one error line, exit 2


if __name__ == "__main__":
    script_main(main)

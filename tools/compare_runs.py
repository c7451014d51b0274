"""Compare training runs side by side: settings that differ, final scores, time, curves.

    python -m tools.compare_runs results/ablate_transforms/none results/ablate_transforms/all \
        --out reports/ablation

Reads what every run folder holds (config.json, metrics.jsonl, final_metrics.json, train.log)
and writes into --out:

  report.md                 one table per run: the settings that differ between the runs, epochs,
                            final accuracy and mIoU (mean +- std over the fresh k-means repeats),
                            thing / stuff mIoU, the untrained network's scores when logged, wall
                            time; then per-class IoU with class names; then the figures
  summary.csv               the same numbers, one row per run
  (report.md also gets a table "Across training seeds" when some runs differ only in --seed:
  their final scores' mean and std over the seeds)
  miou_per_epoch.png        mIoU per epoch of every run (view 1 solid, view 2 dashed, the fresh
  acc_per_epoch.png         K_test clustering dotted when logged; epoch 0 = the untrained network,
                            stars = the final evaluation)
  loss_per_epoch.png        training loss per epoch
  per_class_iou.png         per-class IoU of every run (heatmap, classes x runs)

Runs of different lengths and runs killed before they finished are compared as far as they
got: a run without final_metrics.json is marked "not finished" and its per-class IoU falls
back to its last epoch's view-1 classifier (marked *). A path that is not a run folder stops
the tool with one line naming it (exit 2).
"""
import argparse
import csv
import io
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np
from matplotlib.ticker import MaxNLocator

from config import RESUME_SAFE, ROLES
from config.from_args import SWITCHES_GIVEN_KEY, TRANSFORM_SWITCHES, compare_settings
from tools.make_holdout import RECORD_NAME as HOLDOUT_RECORD
from utils.cli import run_cli
from utils.errors import UserError
from utils.files import save_figure, write_text
from utils.runtime import script_main

# Shown first when they differ, and listed under "common settings" when they do not.
MAIN_KEYS = ("data_root", "dataset", "photometric", "geometric", "pretrain", "K_train", "K_test", "num_epoch", "lr",
             "batch_size_train", "batch_size_cluster", "res", "res1", "res2", "num_init_batches", "kmeans_n_iter",
             "min_scale", "seed", "repeats")
# Config keys that never explain a difference in results: the flags whose role is "safe to change on
# resume" (paths, speed, bookkeeping; config/flags.py), except the main ones above, and what is shown
# in resolved form instead: the original on/off switches and the raw --inv_list/--eqv_list strings are
# summarised by the resolved "photometric" and "geometric" lists of augment_config.
HIDDEN_KEYS = ({flag for flag, role in ROLES.items() if role == RESUME_SAFE} - set(MAIN_KEYS)) | {
    "git_commit", "augment_config", SWITCHES_GIVEN_KEY, *TRANSFORM_SWITCHES, "inv_list", "eqv_list",
}
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"


class NotARunError(UserError):
    """A path given as a run folder is not one; the message names it."""


@dataclass
class Run:
    path: Path
    label: str
    config: dict
    records: list[dict]                     # metrics.jsonl, one per (stage, epoch), last one kept
    final: dict | None                   # final_metrics.json, None when the run did not finish
    notes: list[str] = field(default_factory=list)

    @property
    def settings(self) -> dict[str, str]:
        """Config values as display strings, transforms resolved."""
        out = {k: _fmt_value(v) for k, v in self.config.items() if k not in HIDDEN_KEYS}
        augment = self.config.get("augment_config") or {}
        out["photometric"] = ",".join(augment.get("inv_list") or []) or "none"
        out["geometric"] = ",".join(augment.get("eqv_list") or []) or "none"
        return out

    @property
    def on_holdout(self) -> bool:
        """True when the run trained and was scored on a hold-out root (tools/make_holdout.py wrote
        its HOLDOUT.json): its "val" scores are those of images held out of the training set."""
        root = self.config.get("data_root")
        return bool(root) and (Path(root) / HOLDOUT_RECORD).is_file()

    @property
    def train_records(self) -> list[dict]:
        return sorted((r for r in self.records if r.get("stage") == "train"), key=lambda r: r["epoch"])

    @property
    def epochs_done(self) -> int:
        return max((r["epoch"] for r in self.train_records), default=0)

    @property
    def epochs_planned(self) -> int | None:
        return self.config.get("num_epoch")

    def init_scores(self, stage: str) -> dict | None:
        for record in self.records:
            if record.get("stage") == stage:
                return record.get("fresh")
        return None

    def wall_seconds(self) -> float | None:
        """Sum of the logged phase times (+ the final evaluation); else the span of train.log."""
        total = sum(float(v) for r in self.records for v in (r.get("phase_s") or {}).values())
        if self.final and self.final.get("final_eval_s") is not None:
            total += float(self.final["final_eval_s"])
        if total > 0:
            return total
        return _log_span(self.path / "train.log")


def _fmt_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_fmt_value(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _log_span(path: Path) -> float | None:
    stamps = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in (lines[:5] + lines[-5:]):
        try:
            stamps.append(datetime.strptime(line[:23], LOG_TIME_FORMAT))
        except ValueError:
            continue
    if len(stamps) < 2:
        return None
    return (max(stamps) - min(stamps)).total_seconds()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NotARunError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); "
                           "is the run folder damaged?") from None


def load_run(path: Path) -> Run:
    """A run folder's files; NotARunError naming the path when it is not a run folder."""
    path = Path(path)
    if not path.is_dir():
        raise NotARunError(f"{path} is not a folder; give run folders (<save_root>/<run_name>) holding config.json")
    if not (path / "config.json").is_file():
        raise NotARunError(f"{path} is not a run folder: it has no config.json (a run folder is what "
                           "train_picie.py writes under <save_root>/<run_name>)")
    config = _read_json(path / "config.json")
    notes = []
    by_key = {}
    metrics_path = path / "metrics.jsonl"
    if metrics_path.is_file():
        for number, line in enumerate(metrics_path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                # A run killed while writing leaves a partial last line: skip it, say so.
                notes.append(f"metrics.jsonl line {number} is not valid JSON (skipped)")
                continue
            # A resumed run may log an epoch again: the later line wins.
            by_key[(record.get("stage"), record.get("epoch"))] = record
    else:
        notes.append("no metrics.jsonl (no epoch finished)")
    final = _read_json(path / "final_metrics.json") if (path / "final_metrics.json").is_file() else None
    if final is not None and final.get("acc") is None:
        notes.append("final_metrics.json has no scores (no labelled evaluation images)")
    return Run(path=path, label=path.name, config=config, records=list(by_key.values()), final=final, notes=notes)


def load_runs(paths: Sequence[Path]) -> list[Run]:
    runs = [load_run(Path(p)) for p in paths]
    names = [run.label for run in runs]
    for run in runs:  # two folders of the same name: tell them apart by their parent
        if names.count(run.label) > 1:
            run.label = f"{run.path.parent.name}/{run.path.name}"
    return runs


# ----------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------
def differing_settings(runs: Sequence[Run]) -> list[str]:
    """Setting names whose value is not the same in every run (main ones first)."""
    settings = [run.settings for run in runs]
    keys = sorted(set().union(*settings), key=lambda k: (MAIN_KEYS.index(k) if k in MAIN_KEYS else len(MAIN_KEYS), k))
    return [k for k in keys if len({s.get(k, "—") for s in settings}) > 1]


def _pm(mean, std, repeats=None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = f"{mean:.2f}"
    if std is not None:
        text += f" ± {std:.2f}"
    if repeats:
        text += f" ({repeats}×)"
    return text


def _num(value) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")


def scored_on(runs: Sequence[Run]) -> str:
    """Where the runs' scores come from, for the report's sentences."""
    held = [run for run in runs if run.on_holdout]
    if not held:
        return "val"
    roots = sorted({str(run.config["data_root"]) for run in held})
    where = (f"the hold-out: val2017 of {', '.join(roots)}, training images held out of the source's train2017 "
             f"({HOLDOUT_RECORD} lists them)")
    return where if len(held) == len(runs) else f"{where} for {', '.join(r.label for r in held)}; val for the others"


def name_the_holdout(rows: list[dict[str, str]], runs: Sequence[Run]) -> list[dict[str, str]]:
    """Every score column says "hold-out" when every run is scored on one ("final mIoU" -> "final hold-out
    mIoU"), so that no line of the report reads as a val score."""
    if not runs or not all(run.on_holdout for run in runs):
        return rows
    return [{re.sub(r"\b(mIoU|acc)\b", r"hold-out \1", key, count=1): value for key, value in row.items()}
            for row in rows]


def summary_rows(runs: Sequence[Run], keys: Sequence[str]) -> list[dict[str, str]]:
    # Optional columns appear when at least one run logged them.
    all_records = [r for run in runs for r in run.train_records]
    has_fresh = any("fresh_K_test" in r for r in all_records)
    has_majority = any("majority" in r.get("view1", {}) for r in all_records)
    init_stages = [(stage, name) for stage, name in (("init", "untrained mIoU"), ("init_bn", "untrained+BN mIoU"))
                   if any(run.init_scores(stage) for run in runs)]
    rows = []
    for run in runs:
        settings = run.settings
        row = {"run": run.label}
        row.update({k: settings.get(k, "—") for k in keys})
        planned = run.epochs_planned
        row["epochs"] = f"{run.epochs_done}/{planned}" if planned is not None else str(run.epochs_done)
        final = run.final
        if final is not None and final.get("acc") is not None:
            repeats = final.get("repeats")
            row["final acc"] = _pm(final.get("acc"), final.get("acc_std"), repeats)
            row["final mIoU"] = _pm(final.get("mIoU"), final.get("mIoU_std"), repeats)
            row["thing mIoU"] = _num(final.get("thing_mIoU"))
            row["stuff mIoU"] = _num(final.get("stuff_mIoU"))
        else:
            status = "not finished (no final_metrics.json)" if final is None else "no labelled val images"
            row["final acc"] = status
            row["final mIoU"] = row["thing mIoU"] = row["stuff mIoU"] = "—"
        last = run.train_records[-1] if run.train_records else {}
        row["last-epoch view1 mIoU"] = _num(last.get("view1", {}).get("mIoU"))
        if has_majority:
            row["last-epoch view1 majority mIoU"] = _num(last.get("view1", {}).get("majority", {}).get("mIoU"))
        if has_fresh:
            row["last-epoch fresh K_test mIoU"] = _num(last.get("fresh_K_test", {}).get("mIoU"))
        for stage, name in init_stages:
            scores = run.init_scores(stage)
            row[name] = _pm(scores.get("mIoU"), scores.get("mIoU_std"), scores.get("repeats")) if scores else "—"
        row["wall time"] = _duration(run.wall_seconds())
        rows.append(row)
    return rows


def per_class_table(runs: Sequence[Run]) -> (list[str], dict[str, dict[str, float | None]], dict[str, bool]):
    """Class names (first-seen order), {run label: {class: IoU}}, {run label: from last epoch?}."""
    classes, table, from_epoch = [], {}, {}
    for run in runs:
        values = (run.final or {}).get("per_class_iou")
        from_epoch[run.label] = False
        if not values and run.train_records:
            values = run.train_records[-1].get("view1", {}).get("per_class_iou")
            from_epoch[run.label] = bool(values)
        table[run.label] = dict(values or {})
        for name in values or {}:
            if name not in classes:
                classes.append(name)
    return classes, table, from_epoch


def seed_groups(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs whose settings differ only in --seed, grouped (first-seen order)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        key = json.dumps({k: v for k, v in run.settings.items() if k != "seed"}, sort_keys=True)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def seed_rows(groups: Sequence[Sequence[Run]]) -> list[dict[str, str]]:
    """Final scores across training seeds: the repeats' std measures only k-means noise, the spread
    over seeds measures training noise too, which is what tells two settings apart."""
    rows = []
    for group in groups:
        finished = [run for run in group if run.final and run.final.get("mIoU") is not None]
        names = {run.path.name for run in group}
        row = {"runs": names.pop() if len(names) == 1 else ", ".join(run.label for run in group),
               "seeds": ", ".join(str(run.config.get("seed", "?")) for run in group)}
        for key, name in (("mIoU", "final mIoU"), ("acc", "final acc")):
            values = [run.final[key] for run in finished]
            row[f"{name} per seed"] = ", ".join(f"{v:.2f}" for v in values) or "—"
            row[f"{name} mean ± std over seeds"] = (_pm(float(np.mean(values)), float(np.std(values)))
                                                    if values else "—")
        bn = [run.init_scores("init_bn")["mIoU"] for run in group if run.init_scores("init_bn")]
        if bn:
            row["untrained+BN mIoU mean ± std"] = _pm(float(np.mean(bn)), float(np.std(bn)))
        row["finished"] = f"{len(finished)}/{len(group)}"
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[dict[str, str]], columns: Sequence[str]) -> str:
    def cell(text) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(c, "—")) for c in columns) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------
def _colours(n: int):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def plot_metric(runs: Sequence[Run], metric: str, ylabel: str, path: Path) -> None:
    """One line per run and view: x = epoch, y = metric of that epoch's classifiers."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for run, colour in zip(runs, _colours(len(runs)), strict=True):
        records = run.train_records
        for key, style, suffix in (("view1", "-", "view 1"), ("view2", "--", "view 2"),
                                   ("fresh_K_test", ":", "fresh K_test")):
            points = [(r["epoch"], r[key][metric]) for r in records
                      if r.get(key, {}).get(metric) is not None]
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, style, color=colour, marker="o" if key == "view1" else None, markersize=3,
                        label=f"{run.label} ({suffix})")
        for stage, marker in (("init", "x"), ("init_bn", "+")):
            scores = run.init_scores(stage)
            if scores and scores.get(metric) is not None:
                ax.plot([0], [scores[metric]], marker, color=colour, markersize=8)
        final = run.final or {}
        if final.get(metric) is not None:
            ax.errorbar([final.get("epochs", run.epochs_done)], [final[metric]], yerr=[final.get(f"{metric}_std", 0)],
                        fmt="*", color=colour, markersize=11, capsize=3)
    ax.set_xlabel("epoch (0 = untrained: x as initialised, + BatchNorm re-estimated; ★ final fresh k-means)")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, ncol=1 if len(handles) <= 12 else 2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.text(0.5, 0.5, "no epoch was scored", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_loss(runs: Sequence[Run], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run, colour in zip(runs, _colours(len(runs)), strict=True):
        points = [(r["epoch"], r["loss"]) for r in run.train_records if r.get("loss") is not None]
        if points:
            x, y = zip(*points, strict=True)
            ax.plot(x, y, "-o", color=colour, markersize=3, label=run.label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (1/2 within-view + 1/2 cross-view CE)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_per_class(classes: Sequence[str], table: dict[str, dict], runs: Sequence[Run], from_epoch: dict[str, bool],
                   path: Path) -> None:
    """Heatmap of IoU, classes x runs, each cell annotated (readable for any number of runs)."""
    labels = [run.label for run in runs]
    ticks = [label + (" *" if from_epoch[label] else "") for label in labels]
    values = np.array([[table[label].get(c) if table[label].get(c) is not None else np.nan for label in labels]
                       for c in classes], dtype=float).reshape(len(classes), len(labels))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(labels) + 3), max(3.0, 0.32 * len(classes) + 1.8)))
    if values.size:
        top = max(1.0, float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
        image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto", vmin=0, vmax=top)
        fig.colorbar(image, ax=ax, label="IoU (%)")
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                text = "—" if np.isnan(values[i, j]) else f"{values[i, j]:.0f}"
                dark_cell = np.isnan(values[i, j]) or values[i, j] < 0.6 * top  # viridis is light at the top
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark_cell else "black")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(ticks, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels(classes, fontsize=8)
    title = "per-class IoU (final fresh k-means"
    title += "; * not finished: last epoch's view-1 classifier)" if any(from_epoch.values()) else ")"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------
def write_report(runs: Sequence[Run], out_dir: Path, title: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = differing_settings(runs)
    rows = name_the_holdout(summary_rows(runs, keys), runs)
    columns = list(rows[0])
    classes, table, from_epoch = per_class_table(runs)

    plot_metric(runs, "mIoU", "mIoU (%)", out_dir / "miou_per_epoch.png")
    plot_metric(runs, "acc", "pixel accuracy (%)", out_dir / "acc_per_epoch.png")
    plot_loss(runs, out_dir / "loss_per_epoch.png")
    plot_per_class(classes, table, runs, from_epoch, out_dir / "per_class_iou.png")

    summary = io.StringIO(newline="")
    writer = csv.DictWriter(summary, fieldnames=columns + ["path"])
    writer.writeheader()
    for run, row in zip(runs, rows, strict=True):
        writer.writerow({**row, "path": str(run.path)})
    write_text(out_dir / "summary.csv", summary.getvalue())

    common = {}
    first = runs[0].settings
    for key in MAIN_KEYS:
        if key in first and key not in keys and all(run.settings.get(key) == first[key] for run in runs):
            common[key] = first[key]
    lines = [f"# {title}", "",
             f"{len(runs)} run(s), compared by `tools/compare_runs.py` on {time.strftime('%Y-%m-%d %H:%M')}. "
             "Final scores: fresh k-means with K_test clusters on the un-augmented train images, scored on "
             f"{scored_on(runs)} (mean ± std over the repeats). Wall time: the sum of the logged phases.", ""]
    if keys:
        lines += [f"Settings that differ: {', '.join(f'`{k}`' for k in keys)}.", ""]
    else:
        lines += ["The runs' settings are identical (apart from paths and bookkeeping).", ""]
    if common:
        lines += ["Common settings: " + ", ".join(f"`{k}` {v}" for k, v in common.items()) + ".", ""]
    lines += ["## Summary", "", markdown_table(rows, columns), ""]
    groups = seed_groups(runs)
    if any(len(group) > 1 for group in groups):
        rows_by_seed = name_the_holdout(seed_rows(groups), runs)
        lines += ["## Across training seeds", "",
                  "Runs whose settings differ only in `seed`, grouped: mean ± std (population) of their final scores "
                  "over the seeds.", "", markdown_table(rows_by_seed, list(rows_by_seed[0])), ""]
    lines += ["## Per-class IoU", ""]
    if classes:
        pc_rows = []
        pc_columns = ["class"] + [run.label + (" *" if from_epoch[run.label] else "") for run in runs]
        for name in classes:
            values = [table[run.label].get(name) for run in runs]
            finite = [v for v in values if v is not None]
            best = max(finite) if finite else None
            row = {"class": name}
            for column, value in zip(pc_columns[1:], values, strict=True):
                text = _num(value)
                # Bold the best run of the class, unless every run scores the same.
                bold = value is not None and value == best and len(set(finite)) > 1
                row[column] = f"**{text}**" if bold else text
            pc_rows.append(row)
        lines += [markdown_table(pc_rows, pc_columns), ""]
        if any(from_epoch.values()):
            lines += ["\\* not finished: the last epoch's view-1 classifier instead of the final evaluation.", ""]
    else:
        lines += ["No run has per-class scores.", ""]
    lines += ["## Figures", "", "![mIoU per epoch](miou_per_epoch.png)", "", "![accuracy per epoch](acc_per_epoch.png)",
              "", "![loss per epoch](loss_per_epoch.png)", "", "![per-class IoU](per_class_iou.png)", "",
              "## Runs", ""]
    for run in runs:
        commit = run.config.get("git_commit", "unknown")
        status = "finished" if run.final is not None else f"not finished ({run.epochs_done} epoch(s) logged)"
        note = f"; {'; '.join(run.notes)}" if run.notes else ""
        lines.append(f"- **{run.label}**: `{run.path}`, git `{commit}`, {status}{note}")
    report = out_dir / "report.md"
    write_text(report, "\n".join(lines) + "\n")
    return report


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (<save_root>/<run_name>)")
    parser.add_argument("--out", type=str, default="reports/compare_runs",
                        help="report folder (report.md, summary.csv, PNG figures); created if missing")
    parser.add_argument("--title", type=str, default="Run comparison", help="heading of report.md")
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def compare() -> None:
        settings = compare_settings(args)
        runs = load_runs(settings.runs)
        try:
            report = write_report(runs, settings.out, settings.title)
        except OSError as exc:  # the folder itself (a file written is whole or not at all: utils/files.py)
            raise UserError(f"cannot write the report to --out {settings.out} ({exc.strerror}); choose a writable "
                            "folder") from None
        print(f"compared {len(runs)} run(s): {report}")
    return run_cli(compare)  # bad input: one error line, exit 2


if __name__ == "__main__":
    script_main(main)

"""Break the method on purpose, one defect at a time, and check that a test catches each.

    python -m tools.mutation_check            # or: make mutation
    python -m tools.mutation_check --list     # the breakages and the tests that must catch them

Each mutation is a defect PiCIE code can have (several are the original code's): the k-means pass
run in training mode, every k-means seeded 0, no FPN top-down path, ... For each one this tool
copies the working tree into a temporary folder, applies the one edit there (never in the
checkout), runs the tests named for it, and prints whether they failed (caught) or passed (missed).
The unchanged copy must pass the same tests first, so a "caught" is the mutation's doing. Exit
code 0 when every mutation is caught, 1 otherwise.
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from config.from_args import mutation_settings
from utils.cli import run_cli
from utils.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str          # file, relative to the repository root
    original: str      # text that must occur exactly once in it
    mutated: str
    tests: tuple       # pytest node ids that must fail


MUTATIONS = (
    Mutation("k-means pass in training mode (BatchNorm statistics drift, the original's defect)",
             "modules/pseudo_labels.py", "    model.eval()  # BatchNorm statistics stay fixed",
             "    model.train()  # BatchNorm statistics stay fixed",
             ("tests/test_pseudo_labels.py::test_clustering_pass_leaves_batchnorm_statistics_untouched",)),
    Mutation("every k-means seeded 0 (the original's defect)",
             "modules/objectives.py",
             "        return seed * 1000 + epoch * 2 + self.view + (AUX_SEED_OFFSET if self.aux else 0)",
             "        return 0",
             ("tests/test_pseudo_labels.py::test_kmeans_seeds_differ_by_view_epoch_and_seed",)),
    Mutation("FPN top-down path removed (only the finest lateral)",
             "modules/fpn.py",
             'return F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False) + fine',
             "return fine",
             ("tests/test_fpn.py::test_fpn_is_the_hand_computed_top_down_sum",)),
    Mutation("FPN upsampling switched to nearest",
             "modules/fpn.py",
             'return F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False) + fine',
             'return F.interpolate(coarse, size=fine.shape[-2:], mode="nearest") + fine',
             ("tests/test_fpn.py::test_fpn_is_the_hand_computed_top_down_sum",)),
    Mutation("thing/stuff mIoU in cluster order (the original's defect)",
             "modules/metrics.py", '    result["thing_mIoU"] = 100 * _nanmean(iou[thing]) if thing else None\n'
             '    result["stuff_mIoU"] = 100 * _nanmean(iou[stuff]) if stuff else None',
             '    result["thing_mIoU"] = 100 * _nanmean(iou[class_of_cluster[thing]]) if thing else None\n'
             '    result["stuff_mIoU"] = 100 * _nanmean(iou[class_of_cluster[stuff]]) if stuff else None',
             ("tests/test_metrics.py::test_thing_stuff_over_ground_truth_classes",)),
    Mutation("greyscale never applied (the original's --grey defect)",
             "data/transforms.py", "    if params.grey_on.any():", "    if False:",
             ("tests/test_transforms.py::test_greyscale_really_applies",
              "tests/test_transforms.py::test_grey_switch_yields_grey")),
    Mutation("blur sigma outside [0.1, 2] (the original drew it in [-1.8, 0.1))",
             "data/transforms.py", "    sigma = lo + (hi - lo) * u[10] if", "    sigma = lo - (hi - lo) * u[10] if",
             ("tests/test_transforms.py::test_blur_really_applies", "tests/test_transforms.py::test_parameter_ranges")),
    Mutation("cross-view term using the view's own centroids",
             "modules/loss.py", "        logits_12 = centroid_logits(feats_view1, centroids_view2).float()",
             "        logits_12 = centroid_logits(feats_view1, centroids_view1).float()",
             ("tests/test_loss.py",)),
    Mutation("class weights dropped from the cross-entropy",
             "modules/objectives.py",
             "        self.weights = [None if w is None else w.to(device) "
             "for w in (class_weights(c, weighting) for c in counts)]",
             "        self.weights = [None for c in counts]",
             ("tests/test_objectives.py", "tests/test_loss.py")),
    # What a shared session run writes (tests/conftest.py: tiny_run, tiny_run_copy) is trusted by every test
    # that reads it, so each breakage of its outputs must be noticed by one of those readers.
    Mutation("shared run: the checkpoint stores view 2's classifier as view 1's",
             "train_picie.py", "            centroids = objective.named_centroids(clusters.centroids)",
             "            centroids = dict(zip(objective.named_centroids(clusters.centroids),\n"
             "                                 reversed(objective.named_centroids(clusters.centroids).values())))",
             ("tests/test_end_to_end.py::test_checkpoint_evaluates_with_test_picie",)),
    Mutation("shared run: the checkpoint stores no cluster -> class matching",
             "train_picie.py", "matchings = epoch_matchings(epoch_record, centroids, source.class_names)",
             "matchings = {}",
             ("tests/test_predict.py::test_checkpoint_stores_the_matching_of_its_evaluation",)),
    Mutation("shared run: metrics.jsonl misses the BatchNorm-calibrated untrained record",
             "utils/run.py",
             "        if dist.is_main():\n            rewrite_metrics(self.path, self.history, self._lines)",
             "        if dist.is_main():\n"
             "            rewrite_metrics(self.path, self.history, [line for line in self._lines\n"
             "                                                      if '\"stage\": \"init_bn\"' not in line])",
             ("tests/test_end_to_end.py::test_demo_run_writes_metrics_and_checkpoint",)),
    Mutation("shared run's copy: a resumed run forgets the history its checkpoint holds",
             "train_picie.py", '        run_log = RunLog(run_folder, ckpt.get("history", []) if ckpt else [])',
             "        run_log = RunLog(run_folder, [])",
             ("tests/test_end_to_end.py::test_restart_continues_from_checkpoint",)),
    Mutation("shared ablation: the 'none' combination trains with every photometric transform",
             "sh_files/ablate_transforms.sh", 'ALL_COMBOS=("none|none|none" ',
             'ALL_COMBOS=("none|${PHOTO_ALL}|none" ',
             ("tests/test_experiments.py::test_tiny_ablation_runs_end_to_end",)),
)


def copy_tree(destination: Path) -> None:
    """The checkout's files as they are now (tracked, and untracked but not ignored) into destination."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run_tests(tree: Path, tests: Sequence[str]) -> int:
    """pytest's exit code for `tests` in `tree` (its modules first on the path, not the checkout's)."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    return subprocess.run(command, cwd=tree, capture_output=True, text=True).returncode


def check(mutations: Sequence[Mutation]) -> list[tuple]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="picie_mutation_") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        for mutation in mutations:
            started = time.perf_counter()
            path = tree / mutation.path
            text = path.read_text()
            if text.count(mutation.original) != 1:
                verdict = "NOT APPLIED (the code it edits has changed: update this tool)"
            elif run_tests(tree, mutation.tests) != 0:
                verdict = "ERROR: its tests fail on the unmodified code"
            else:
                path.write_text(text.replace(mutation.original, mutation.mutated))
                try:
                    code = run_tests(tree, mutation.tests)
                finally:
                    path.write_text(text)
                verdict = "caught" if code == 1 else "MISSED" if code == 0 else f"ERROR (pytest exit {code})"
            rows.append((mutation, verdict, time.perf_counter() - started))
            print(f"{verdict:8s} {mutation.name}  ({rows[-1][2]:.0f} s)", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser("mutation_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("--match", default="",
                        help="only the mutations whose name contains this text (e.g. 'shared run')")
    settings = mutation_settings(parser.parse_args(argv))
    all_caught = True

    def check_chosen() -> None:
        nonlocal all_caught
        chosen = [m for m in MUTATIONS if settings.match in m.name]
        if not chosen:
            raise UserError(f"no mutation's name contains --match {settings.match!r}; see --list")
        if settings.list_only:
            for mutation in chosen:
                print(f"{mutation.name}\n    {mutation.path}; tests: {', '.join(mutation.tests)}")
            return
        rows = check(chosen)
        caught = sum(verdict == "caught" for _, verdict, _ in rows)
        print(f"\n{caught} of {len(rows)} deliberate breakages caught by a test")
        all_caught = caught == len(rows)
    code = run_cli(check_chosen)  # bad input: one error line, exit 2
    return code or (0 if all_caught else 1)


if __name__ == "__main__":
    sys.exit(main())

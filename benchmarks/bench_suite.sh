#!/usr/bin/env bash
# What the test suite costs at two commits, measured back to back on this machine: pytest's wall and
# CPU time, bytes written to disk and what it leaves in pytest's temporary folder
# (benchmarks/suite_cost.py), then the ratios B / A. Absolute times differ 2-3x between machines of one
# kind; the ratio of two runs on one machine is the figure to quote.
#
#   ./benchmarks/bench_suite.sh REV_A REV_B [OUT]        # e.g. 0279832 HEAD /tmp/suite
#
# Each commit is checked out with `git worktree` into OUT (default: a new temporary folder) and its
# suite runs there with this checkout's .venv (PYTHONPATH points at the worktree, so its code is what
# is imported). Only pytest is timed, not the set-up. REPEAT=2 runs each suite twice (A B A B).
set -euo pipefail
cd "$(dirname "$0")/.."
REV_A=${1:?usage: benchmarks/bench_suite.sh REV_A REV_B [OUT]}
REV_B=${2:?usage: benchmarks/bench_suite.sh REV_A REV_B [OUT]}
OUT=${3:-$(mktemp -d)}
REPEAT=${REPEAT:-1}
PY=${PYTHON:-.venv/bin/python}
case "$PY" in /*) ;; *) PY="$PWD/$PY" ;; esac   # absolute, not resolved: a venv's python is a link
for rev in "$REV_A" "$REV_B"; do
  git rev-parse --verify --quiet "${rev}^{commit}" > /dev/null || {
    echo "error: ${rev} is not a commit of this repository; give two commits (e.g. 0279832 HEAD)" >&2; exit 2; }
done
mkdir -p "$OUT"
SUITE_COST=$(realpath benchmarks/suite_cost.py)
for side in a b; do
  rev=$([ "$side" = a ] && echo "$REV_A" || echo "$REV_B")
  rm -rf "$OUT/$side"; git worktree prune
  git worktree add --detach --quiet "$OUT/$side" "$rev"
  # The shell scripts the suite runs look for .venv inside the checkout: give each worktree this one.
  [ -d "$(dirname "$(dirname "$PY")")/bin" ] && ln -s "$(dirname "$(dirname "$PY")")" "$OUT/$side/.venv"
done
for i in $(seq 1 "$REPEAT"); do
  for side in a b; do
    echo "== suite $side ($(git -C "$OUT/$side" rev-parse --short HEAD)), run $i" >&2
    (cd "$OUT/$side" && PYTHONPATH="$OUT/$side" "$PY" "$SUITE_COST" --json "$OUT/${side}_$i.json" \
       -- -q -p no:cacheprovider tests > "$OUT/${side}_$i.log" 2>&1) || echo "   (its pytest failed: $OUT/${side}_$i.log)" >&2
    tail -2 "$OUT/${side}_$i.log" >&2
  done
done
"$PY" - "$OUT" "$REPEAT" "$(git -C "$OUT/a" rev-parse --short HEAD)" "$(git -C "$OUT/b" rev-parse --short HEAD)" <<'EOF'
import json, statistics, sys
out, repeat, rev_a, rev_b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = {side: [json.load(open(f"{out}/{side}_{i}.json")) for i in range(1, repeat + 1)] for side in "ab"}
print(f"| figure | {rev_a} | {rev_b} | ratio {rev_b} / {rev_a} |")
print("|---|---|---|---|")
for key, unit in (("wall_s", "s"), ("cpu_s", "s"), ("written_mb", "MB"), ("left_mb", "MB")):
    a = statistics.median(r[key] for r in runs["a"])
    b = statistics.median(r[key] for r in runs["b"])
    ratio = f"{b / a:.3f}" if a else "-"
    print(f"| {key} | {a:.0f} {unit} | {b:.0f} {unit} | {ratio} |")
print("exit codes:", {side: [r["exit_code"] for r in runs[side]] for side in "ab"})
EOF
git worktree remove --force "$OUT/a"; git worktree remove --force "$OUT/b"

"""What a finished run computed, as hashes: to show a refactor changed nothing.

    python -m benchmarks.fingerprint results/<run> [results/<other run> ...]

Prints, per run folder: final accuracy and mIoU, a SHA-256 of the model weights in its
checkpoint, of metrics.jsonl and of final_metrics.json, each without what legitimately differs
between two runs of the same code (wall-clock times, the git commit, the k-means memory counter).
Two --deterministic --precision fp32 runs of the same settings give the same fingerprint on the
CPU; a change that alters anything the method computes changes it.
"""
import argparse
import hashlib
import json
from pathlib import Path

import torch

from utils.runtime import script_main

IGNORED = {"phase_s", "final_eval_s", "git_commit", "kmeans_peak_mb", "seconds_per_image"}


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in IGNORED}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(run: Path, keys=None) -> dict[str, object]:
    """{acc, mIoU, model, history, final} of a run folder; `keys` limits the final metrics hashed
    (e.g. those an older version also wrote)."""
    final = _strip(json.loads((run / "final_metrics.json").read_text()))
    history = [_strip(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()]
    model = torch.load(run / "checkpoint.pth", map_location="cpu", weights_only=True)["model"]
    weights = hashlib.sha256()
    for name in sorted(model):
        weights.update(name.encode())
        weights.update(model[name].numpy().tobytes())
    hashed = {k: v for k, v in final.items() if keys is None or k in keys}
    return {"acc": final.get("acc"), "mIoU": final.get("mIoU"), "model": weights.hexdigest()[:16],
            "history": _sha(history), "final": _sha(hashed)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser("fingerprint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+",
                        help="run folders (each with checkpoint.pth, metrics.jsonl, final_metrics.json)")
    parser.add_argument("--keys", nargs="*", default=None, help="hash only these keys of final_metrics.json")
    args = parser.parse_args(argv)
    for run in args.runs:
        print(run, json.dumps(fingerprint(Path(run), args.keys)))
    return 0


if __name__ == "__main__":
    script_main(main)

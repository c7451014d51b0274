"""Checkpoint files: atomic writes, this toolkit's format, the original PiCIE format, exact resume.

This toolkit writes a dict with format = FORMAT: the model config (enough to rebuild the
network, see modules/fpn.py), the model and optimiser state, the classifiers (centroids as
[K, C] weights and [K] biases, one entry per clustering head, with the cluster -> class
matching of the epoch's evaluation where there was one), the number of completed epochs,
the run config and the evaluation config, the global RNG states, the CPU thread counts and the
run's history (the records of metrics.jsonl).

The original project wrote {'epoch', 'args', 'state_dict', 'classifier1_state_dict',
'classifier2_state_dict', 'optimizer'} with DataParallel 'module.' prefixes and FPN laterals
named decoder.layer1..4 (layer1 reads the stride-32 map); `load_checkpoint` converts it.

Why a resumed run can be exact: every epoch is a pure function of (model and optimiser state
at its start, --seed, epoch): transform parameters are drawn per (seed, epoch, image), the
sampler order per (seed, epoch) and the k-means seeds per (seed, epoch, view). The epoch
checkpoint holds that state. What else could carry state is handled here and in utils/run.py:
the global RNG states (saved and restored), the CPU thread counts (results depend on them; with
--deterministic a resumed run takes the original counts), metrics.jsonl (rewritten from the
checkpoint's history) and temporary files of an interrupted save (removed).
"""
import argparse
import logging
import random
import re
from pathlib import Path

import numpy as np
import torch

from utils.errors import UserError
from utils.files import FREE_SPACE_HINT, write_atomic
from utils.runtime import set_thread_counts, thread_counts

log = logging.getLogger("picie")
FORMAT = "picie-toolkit/1"


class CheckpointError(UserError):
    """A file is not a PiCIE checkpoint (of either format); the message names it."""


def state_dict_differences(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], n: int = 3) -> str:
    """Why `given` does not load into a network whose state dict is `expected`, in one line: the
    first `n` missing and unexpected keys and tensors of another shape ('' when they fit)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    reshaped = [f"{k} {list(getattr(given[k], 'shape', ()))} where the network has {list(expected[k].shape)}"
                for k in expected if k in given and tuple(getattr(given[k], "shape", ())) != tuple(expected[k].shape)]
    parts = [f"{len(keys)} {what.format('s' if len(keys) > 1 else '')} ({', '.join(keys[:n])}"
             f"{', ...' if len(keys) > n else ''})"
             for what, keys in (("key{} missing", missing), ("unexpected key{}", unexpected),
                                ("tensor{} of another shape", reshaped)) if keys]
    return "; ".join(parts)


def atomic_save(obj, path, hint: str = FREE_SPACE_HINT) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`
    (utils/files.py: write_atomic): a crash at any moment leaves either the old or the new file,
    never a torn one; a failed write (OSError, or torch's RuntimeError) raises WriteError."""
    write_atomic(path, lambda handle: torch.save(obj, handle), hint=hint)



def _torch_load(path: Path):
    # The original pickled its argparse.Namespace; allow exactly that class besides tensors.
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _infer_arch(state: dict[str, torch.Tensor]) -> str:
    """ResNet depth from the backbone's keys (bottleneck blocks have conv3; count layer3 blocks)."""
    blocks = {int(m.group(1)) for k in state for m in [re.match(r"backbone\.layer3\.(\d+)\.", k)] if m}
    bottleneck = any(k.startswith("backbone.layer1.0.conv3.") for k in state)
    n_blocks = max(blocks) + 1 if blocks else 0
    if bottleneck:
        return "resnet101" if n_blocks > 6 else "resnet50"
    return "resnet34" if n_blocks > 2 else "resnet18"


def _convert_original(ckpt: dict, path: Path) -> dict:
    """Original PiCIE checkpoint -> this toolkit's layout (model keys, classifiers, config)."""
    state = {}
    for key, value in ckpt["state_dict"].items():
        key = key.removeprefix("module.")
        match = re.match(r"decoder\.layer([1-4])\.(weight|bias)$", key)
        if match:
            key = f"decoder.lateral{5 - int(match.group(1))}.{match.group(2)}"
        state[key] = value
    if "decoder.lateral1.weight" not in state:
        raise CheckpointError(f"{path}: 'state_dict' has no FPN decoder weights; not a PiCIE checkpoint")
    args = ckpt.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else (args or {})
    arch = args.get("arch") or _infer_arch(state)
    feat_dim = int(state["decoder.lateral1.weight"].shape[0])
    classifiers = {}
    for view in (1, 2):
        entry = ckpt.get(f"classifier{view}_state_dict")
        if entry is None:
            continue
        entry = {k.removeprefix("module."): v for k, v in entry.items()}
        classifiers[f"view{view}"] = {"weight": entry["weight"].reshape(entry["weight"].shape[0], -1).float(),
                                      "bias": entry.get("bias")}
    return {
        "format": "picie-original",
        "epoch": int(ckpt.get("epoch", 0)),
        "model_config": {"arch": arch, "feat_dim": feat_dim},
        "model": state,
        "classifiers": classifiers,
        "args": {k: v for k, v in args.items() if isinstance(v, (int, float, str, bool, type(None)))},
        "eval_config": {k: args[k] for k in ("res", "metric_test", "K_test", "stuff", "thing") if k in args},
    }


def load_checkpoint(path) -> dict:
    """Read a checkpoint of this toolkit or of the original project; raise CheckpointError
    with one clear line for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; pass the checkpoint.pth of a run folder "
                              "(or the original's checkpoint.pth.tar)")
    try:
        ckpt = _torch_load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same answer
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({exc.__class__.__name__}); "
                              "pass a checkpoint written by train_picie.py") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a PiCIE checkpoint dict")
    if ckpt.get("format") == FORMAT:
        return ckpt
    if "state_dict" in ckpt and "classifier1_state_dict" in ckpt:
        return _convert_original(ckpt, path)
    raise CheckpointError(f"{path} is not a PiCIE checkpoint (keys: {', '.join(sorted(map(str, ckpt))[:6])}); "
                          "pass a checkpoint written by train_picie.py or by the original PiCIE")


def checkpoint_state(model_config: dict, model_state: dict[str, torch.Tensor], optimizer_state: dict, epoch: int,
                     run_config: dict, classifiers: dict[str, torch.Tensor], eval_config: dict,
                     history: list[dict] | None = None, matchings: dict[str, dict] | None = None) -> dict:
    """Everything to rebuild the model, evaluate it and resume training after `epoch` epochs.

    classifiers: {head name: centroids [K, C]}, stored as frozen classifiers (weight [K, C], bias 0).
    matchings: {head name: matching} of the heads scored on labelled images (see classifier_entry).
    """
    matchings = matchings or {}
    return {
        "format": FORMAT,
        "epoch": epoch,
        "model_config": model_config,
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "optimizer": optimizer_state,
        "classifiers": {name: classifier_entry(c, matchings.get(name)) for name, c in classifiers.items()},
        "args": {k: v for k, v in run_config.items()
                 if isinstance(v, (int, float, str, bool, type(None), list, tuple, dict))},
        "eval_config": eval_config,
        # Global RNGs and CPU thread counts: the rest of an epoch's state derives from (seed, epoch).
        "rng": capture_rng(),
        "threads": thread_counts(),
        "history": history or [],
    }


MATCHING_KEYS = ("cluster_to_class", "cluster_to_class_majority", "class_names", "matching")


def classifier_entry(centroids: torch.Tensor, matching: dict | None = None) -> dict:
    """Frozen classifier of a head as stored: weight [K, C] = centroids, bias [K] = 0, and, when the
    head was scored on labelled images, its matching, so that predict.py can name classes:
    cluster_to_class [K] (class id per cluster, -1 unmatched; one-to-one Hungarian, the metrics'
    protocol), cluster_to_class_majority [K] (many-to-one; only when K > number of classes),
    class_names and matching ("hungarian"). Checkpoints without them still load (cluster ids)."""
    centroids = centroids.detach().float().cpu()
    entry = {"weight": centroids, "bias": torch.zeros(centroids.shape[0])}
    for key in MATCHING_KEYS:
        if matching and matching.get(key) is not None:
            value = matching[key]
            entry[key] = [int(v) for v in value] if key.startswith("cluster_to_class") else (
                [str(v) for v in value] if key == "class_names" else str(value))
    return entry


def epoch_matchings(epoch_record: dict, centroids: dict, class_names) -> dict[str, dict]:
    """{head: matching} of the heads an epoch scored (its record's {head: metrics}), as
    classifier_entry stores them beside the centroids, so predict.py can name classes."""
    matchings = {}
    for head, scores in epoch_record.items():
        if head in centroids and isinstance(scores, dict) and "cluster_to_class" in scores:
            matchings[head] = {"cluster_to_class": scores["cluster_to_class"], "class_names": list(class_names),
                               "matching": scores.get("matching", "hungarian"),
                               "cluster_to_class_majority": scores.get("majority", {}).get("cluster_to_class")}
    return matchings


def save_checkpoint(state: dict, path: Path) -> None:
    """atomic_save; a write error (full disk, lost mount; torch reports some as RuntimeError)
    becomes one clear line, and the previous file at `path` is intact."""
    atomic_save(state, path, hint="the previous checkpoint is intact: free disk space or fix the folder, then "
                                  "resume with --restart")


def keep_epoch_checkpoints(run_folder: Path, state: dict, epoch: int, keep: int) -> None:
    """Also write checkpoint_epoch<epoch>.pth and keep only the last `keep` of them (--keep_checkpoints;
    0 keeps none and writes nothing)."""
    if keep <= 0:
        return
    save_checkpoint(state, Path(run_folder) / f"checkpoint_epoch{epoch}.pth")
    old = sorted(Path(run_folder).glob("checkpoint_epoch*.pth"),
                 key=lambda p: int(p.stem.removeprefix("checkpoint_epoch")))
    for path in old[:-keep]:
        path.unlink()



# -- exact resume ---------------------------------------------------------------------------
def capture_rng() -> dict:
    """The global RNG states (torch CPU and CUDA, numpy, python) in a weights_only-loadable form."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict | None) -> None:
    """Set the global RNGs to a capture_rng() state (older checkpoints: torch only)."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    numpy_state = state.get("numpy")
    if isinstance(numpy_state, dict):
        np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                             numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state.get("python")
    if isinstance(python_state, dict):
        random.setstate((python_state["version"], tuple(python_state["internal"].tolist()),
                         python_state["gauss_next"]))
    cuda_state = state.get("cuda")
    if cuda_state is not None and torch.cuda.is_available() and len(cuda_state) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_state)


def match_thread_counts(saved: dict | None, deterministic: bool) -> None:
    """With --deterministic, use the thread counts of the run being resumed, so that the resumed
    epochs compute exactly what the uninterrupted run would have; otherwise only say so."""
    if not saved:
        return
    now = thread_counts()
    if now == saved:
        return
    if deterministic:
        set_thread_counts(saved)
        log.info("--deterministic: using the thread counts of the resumed run (%s; this machine had %s) so that "
                 "its results are reproduced", saved, now)
    else:
        log.info("thread counts differ from the resumed run's (%s now, %s then): CPU results may differ in the "
                 "last bits; --deterministic makes them match", now, saved)

"""Checkpoints: atomic writes, this toolkit's format and the original PiCIE format.

This toolkit writes a dict with format = FORMAT, the model config (enough to rebuild the
network), the model and optimiser state, both views' classifiers (centroids as 1x1 conv
weights), the number of completed epochs, the run config and the evaluation config.

The original project wrote {'epoch', 'args', 'state_dict', 'classifier1_state_dict',
'classifier2_state_dict', 'optimizer'} with DataParallel 'module.' prefixes and FPN laterals
named decoder.layer1..4 (layer1 reads the stride-32 map); `load_checkpoint` converts it.
"""
import argparse
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, Optional

import torch

from modules.fpn import FPNConfig, ResNetFPN

FORMAT = "picie-toolkit/1"


class CheckpointError(ValueError):
    """A file is not a PiCIE checkpoint (of either format); the message names it."""


def atomic_save(obj, path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`:
    a crash at any moment leaves either the old or the new file, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _torch_load(path: Path):
    # The original pickled its argparse.Namespace; allow exactly that class besides tensors.
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _infer_arch(state: Dict[str, torch.Tensor]) -> str:
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


def build_model_from_checkpoint(ckpt: dict, device: Optional[torch.device] = None) -> ResNetFPN:
    config = ckpt["model_config"]
    model = ResNetFPN(FPNConfig(config["arch"], config["feat_dim"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"checkpoint weights do not fit a {config['arch']} FPN ({first})") from None
    return model.to(device) if device is not None else model

"""Building blocks of the entry points: runtime, optimiser, checkpoint state, evaluations."""
import logging
import random
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from data.build import cluster_dataset, val_dataset
from data.cocostuff_classes import STUFF_CLASSES, THING_CLASSES
from utils import dist
from data.transforms import ViewMaker
from utils.checkpoint import FORMAT
from utils.config import augment_config
from utils.engine import KMeansSettings, Runtime, evaluate, fresh_kmeans
from utils.metrics import segmentation_metrics, summarize_repeats
from utils.reliability import capture_rng, thread_counts
from utils.run import make_loader, select_amp_dtype, select_device

log = logging.getLogger("picie")


def make_runtime(args) -> Runtime:
    device = select_device(args.device)
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    amp_dtype = select_amp_dtype(args.precision, device, args.deterministic)
    return Runtime(device=device, amp_dtype=amp_dtype, channels_last=True)


def make_view_maker(args) -> ViewMaker:
    return ViewMaker(augment_config(args), args.res1, args.seed, photometric_res=args.photometric_res)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def build_optimizer(model, args):
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optim_type == "SGD":
        return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)


def classifier_entry(centroids: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Frozen classifier of a view as stored: weight [K, C] = centroids, bias [K] = 0."""
    centroids = centroids.detach().float().cpu()
    return {"weight": centroids, "bias": torch.zeros(centroids.shape[0])}


def thing_stuff_ids(source_name: str, stuff: bool, thing: bool):
    """Ground-truth class ids of the thing and stuff groups in evaluation numbering."""
    if source_name != "cocostuff" or not (stuff and thing):
        return (), ()
    return THING_CLASSES, STUFF_CLASSES


def metrics_from_hist(hist: torch.Tensor, class_names: Sequence[str], thing_ids, stuff_ids) -> Dict:
    """Hungarian metrics; also many-to-one (majority) when there are more clusters than classes."""
    result = segmentation_metrics(hist, class_names, thing_ids, stuff_ids, matching="hungarian")
    if hist.shape[1] > hist.shape[0]:
        result["majority"] = segmentation_metrics(hist, class_names, thing_ids, stuff_ids, matching="majority")
    return result


def checkpoint_state(model, optimizer, epoch: int, args,
                     centroids: Union[None, List[torch.Tensor], Dict[str, torch.Tensor]], eval_config: dict, history: Optional[list] = None) -> dict:
    """Everything to rebuild the model, evaluate it and resume training after `epoch` epochs.
    centroids: per view [K, C] (stored as view1, view2), or {classifier name: [K, C]}."""
    module = model.module if hasattr(model, "module") else model
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "model_config": module.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "classifiers": {},
        "args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, type(None), list, tuple, dict))},
        "eval_config": eval_config,
        # Global RNGs and CPU thread counts: the rest of an epoch's state derives from (seed, epoch).
        "rng": capture_rng(),
        "threads": thread_counts(),
        "history": history or [],
    }
    if isinstance(centroids, dict):
        state["classifiers"] = {name: classifier_entry(c) for name, c in centroids.items()}
    elif centroids is not None:
        state["classifiers"] = {f"view{v + 1}": classifier_entry(c) for v, c in enumerate(centroids)}
    return state


def eval_config_of(args, source) -> dict:
    return {"res": args.res, "metric_test": args.metric_test, "K_test": args.K_test, "stuff": args.stuff,
            "thing": args.thing, "dataset": args.dataset, "class_names": list(source.class_names)}


def val_loader(source, args, runtime):
    dataset = val_dataset(source, args.res, args.bad_labels)
    sampler = dist.EpochSampler(len(dataset), args.seed, shuffle=False)
    return make_loader(dataset, args.batch_size_test, sampler, args.num_workers, runtime.device)


def score_classifiers(model, loader, classifiers: Dict[str, Dict[str, torch.Tensor]], source, args,
                      runtime: Runtime, desc: str) -> Dict[str, Dict]:
    """Metrics of each named classifier {"weight" [K, C], "bias" [K]} from one pass over val."""
    names = list(classifiers)
    hists = evaluate(model, loader, [(classifiers[n]["weight"], classifiers[n].get("bias")) for n in names],
                     source.n_classes, runtime, args.metric_test == "cosine", desc=desc)
    thing_ids, stuff_ids = thing_stuff_ids(source.name, args.stuff, args.thing)
    return {n: metrics_from_hist(h, source.class_names, thing_ids, stuff_ids) for n, h in zip(names, hists)}


def fresh_cluster_evaluation(model, source, args, runtime: Runtime, val_loader_, desc: str = "final",
                             repeats: Optional[int] = None) -> Dict:
    """The paper's final protocol: k-means with K_test clusters on the un-augmented train images,
    `repeats` times (default `--repeats`; seeds seed, seed+1, ...), each scored on val; mean +- std."""
    dataset = cluster_dataset(source, args.res)
    sampler = dist.EpochSampler(len(dataset), args.seed, epoch=10 ** 6, shuffle=True)
    loader = make_loader(dataset, args.batch_size_cluster, sampler, args.num_workers, runtime.device)
    settings = KMeansSettings(n_clusters=args.K_test, n_iter=args.kmeans_n_iter,
                              num_init_batches=args.num_init_batches, num_batches=args.num_batches,
                              pixels_per_image=args.kmeans_pixels_per_image,
                              init_all_pixels=args.kmeans_init_all_pixels, backend=args.kmeans_backend)
    seeds = [args.seed + r for r in range(max(args.repeats if repeats is None else repeats, 1))]
    centroids = fresh_kmeans(model, loader, settings, runtime, seeds, args.metric_test == "cosine",
                             desc=f"{desc} k-means")
    classifiers = {f"repeat{r}": classifier_entry(c) for r, c in enumerate(centroids)}
    per_repeat = score_classifiers(model, val_loader_, classifiers, source, args, runtime, desc=f"{desc} eval")
    results = [per_repeat[f"repeat{r}"] for r in range(len(seeds))]
    summary = summarize_repeats(results)
    # Per-class IoU averaged over repeats (classes with no value in a repeat are skipped).
    per_class = {}
    for name in source.class_names:
        values = [r["per_class_iou"].get(name) for r in results if r["per_class_iou"].get(name) is not None]
        per_class[name] = float(np.mean(values)) if values else None
    summary.update(per_class_iou=per_class, runs=results, seeds=seeds, K=args.K_test)
    return summary

"""Train PiCIE: python train_picie.py --preset paper --data_root datasets/coco [flags].

Each epoch: (1) cluster both views with mini-batch k-means and (2) label every pixel
(modules/pseudo_labels.py), (3) train against the labels with the within- and cross-view
balanced CE (train_one_epoch, modules/loss.py), (4) score each view's classifier, (5) checkpoint.
After the last epoch: fresh k-means on the train images, scored on val (modules/evaluation.py).
The same loop trains PiCIE+H (--overcluster) and the MDC baseline (--method mdc); what they
change is in the objective (modules/objectives.py). Flags and presets: config/.
"""
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
from torch.nn.parallel import DistributedDataParallel

from data.build import build_source, train_dataset
from data.transforms import ViewMaker
from data.validation import check_bad_images, check_training_images, scan_label_maps
from config import (OptimSettings, RunSettings, config_to_json, eval_config, get_args_parser, parse_args,
                    resolve_restart, settings_from_args)
from modules.evaluation import (ExampleMaps, evaluation_record, evaluation_runtime, fresh_cluster_evaluation,
                                score_classifiers, val_loader)
from modules.networks import build_model, calibrate_batchnorm, has_batchnorm, model_from_checkpoint
from modules.kmeans import require_points
from modules.objectives import Objective, build_objective
from modules.pseudo_labels import (EpochClusters, allocate_labels, batch_labels, cluster_and_label, training_batches,
                                   training_views)
from modules.siamese import SiamesePair, features_of_views
from utils import dist
from utils.checkpoint import (checkpoint_state, classifier_entry, keep_epoch_checkpoints, load_checkpoint,
                              match_thread_counts, restore_rng, save_checkpoint)
from utils.errors import UserError
from utils.loaders import make_loader
from utils.run import (CHECKPOINT_NAME, RunLog, RunProgress, attach_log_file, check_run_folder, git_commit,
                       prepare_run_folder, remove_stale_temp_files, resume_command, setup_logging, write_json)
from utils.runtime import Runtime, configure_determinism, make_runtime, seed_everything
from utils.signals import GracefulStop, StopRequested, stop_requested
from utils.tb import open_tensorboard


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf."""


def main(s: RunSettings, progress: Optional[RunProgress] = None) -> dict:
    """The run; `progress` is kept up to date for the messages of cli() when it stops early."""
    progress = progress if progress is not None else RunProgress()
    # --- 1. Where the network runs; then every check that can fail, before anything is written --
    configure_determinism(s.deterministic)
    runtime = make_runtime(s.device, s.precision, s.deterministic)
    eval_runtime = evaluation_runtime(runtime, s.eval)  # float32 unless --eval_precision says otherwise
    run_folder = Path(s.save_root) / s.run_name
    check_run_folder(run_folder, s.restart, s.overwrite)
    tb = open_tensorboard(s.tensorboard, run_folder)  # a no-op without --tensorboard; writes nothing yet
    log = setup_logging() if not logging.getLogger().handlers else logging.getLogger("picie")
    seed_everything(s.seed)

    # --- 2. Data: training images (both views are made on the device), labelled val images -----
    source = build_source(s.data)
    trainset = train_dataset(source, s.train.res2)
    cluster_loader, train_loader = training_loaders(trainset, s, runtime)
    evaluation_loader = val_loader(source, s.eval, runtime) if source.has_labels else None
    log.info("data: %d training images, %d evaluation images, %d classes (%s)", len(trainset),
             len(source.val_images), source.n_classes, source.name)
    # Every label map and image header is checked now, so bad data stops the run before it starts.
    label_report = (scan_label_maps(source.val_images, source.val_labels, source.label_valid, s.eval.bad_labels,
                                    s.num_workers, source.label_lut) if source.has_labels else {})
    check_training_images(trainset.image_paths, s.train.max_bad_fraction, s.num_workers)

    # --- 3. Network, optimiser, views, objective (its clustering heads) ------------------------------
    checkpoint_path = progress.checkpoint = run_folder / CHECKPOINT_NAME
    model, optimizer, ckpt = build_or_resume(s, checkpoint_path, runtime, log)
    # The views' geometric parameters live on the network's feature grid (res1 / stride cells).
    view_maker = ViewMaker(s.augment, s.train.res1, s.seed, feature_stride=model.stride,
                           photometric_res=s.train.photometric_res)
    objective = build_objective(s.train.method, s.kmeans.n_clusters, model.feat_dim, s.train.aux_clusters,
                                s.train.nonparametric, lambda module: build_optimizer(module, s.optim), s.seed,
                                s.train.loss_terms)
    check_cluster_counts(objective, len(trainset) * view_maker.grid ** 2, source, s, model.stride)
    if finished(run_folder, ckpt, s.train.num_epoch, log):
        return json.loads((run_folder / "final_metrics.json").read_text())

    # --- 4. The run folder (created, or continued) and its record, the pseudo-label arrays ------------
    record = open_run(s, runtime, run_folder, fresh=ckpt is None)
    start_epoch = progress.saved_epoch = ckpt["epoch"] if ckpt else None
    run_log = RunLog(run_folder, ckpt.get("history", []) if ckpt else [])
    pair = training_pair(model, runtime)
    log.info("method: %s, clusterings per epoch: %s", objective.name,
             ", ".join(f"{h.name} (K={h.n_clusters})" for h in objective.heads))
    labels = allocate_labels(len(trainset), view_maker.grid, objective.heads,
                             str(run_folder / f"pseudo_labels_rank{dist.rank()}"))
    checkpoint_of = lambda epoch, centroids, matchings=None: checkpoint_state(  # noqa: E731 - what every save writes
        model.config.to_dict(), model.state_dict(), optimizer.state_dict(), epoch, record,
        centroids, eval_config(s, source.class_names), run_log.history, matchings)

    # --- 5. The untrained network for reference; BatchNorm statistics of a random init ------------
    progress.enter("initial evaluation and BatchNorm calibration")
    if ckpt is None:  # a resumed run (even from the epoch-0 checkpoint) has done this already
        prepare_untrained(model, s, source, evaluation_loader, cluster_loader, view_maker, runtime, eval_runtime,
                          run_log, log)
        if dist.is_main():  # epoch 0: a run stopped in its first epoch resumes after the calibration
            save_checkpoint(checkpoint_of(0, {}), checkpoint_path)
            progress.saved_epoch = 0
    else:
        restore_rng(ckpt.get("rng"))  # the global RNGs as they were when the checkpoint was written

    # --- 6. Epochs: cluster and label, train, score, checkpoint -----------------------------------
    example_maps = ExampleMaps(model, source, s.eval, eval_runtime)
    for epoch in range(start_epoch or 0, s.train.num_epoch):
        progress.start_epoch(epoch, s.train.num_epoch)
        cluster_loader.sampler.epoch = train_loader.sampler.epoch = epoch
        dist.average_buffers(model)  # ranks' BatchNorm statistics drift apart in training
        cluster_loader.skipped.clear()
        train_loader.skipped.clear()
        progress.enter("clustering and labelling")
        clusters = cluster_and_label(model, cluster_loader, view_maker, epoch, objective.heads, s.kmeans, runtime,
                                     labels, s.seed, s.train.l2_normalize, s.train.feature_cache_bytes, progress.lap)
        check_bad_images(_paths(trainset, cluster_loader.skipped), len(trainset), s.train.max_bad_fraction)
        progress.enter("training")
        epoch_record = train_one_epoch(pair, objective, optimizer, train_loader, view_maker, epoch, clusters, runtime,
                                       s.train.l2_normalize, s.train.class_weights, s.train.skip_nonfinite,
                                       should_stop=lambda: bool(stop_requested()))
        if stop_requested():
            raise StopRequested(stop_requested())
        progress.lap("train")
        record_bad_images(epoch_record, trainset, cluster_loader.skipped | train_loader.skipped,
                          s.train.max_bad_fraction, epoch, log)
        epoch_record.update(kmeans_loss=clusters.kmeans_loss, reused_features=clusters.reused_features,
                            **clusters.stats)
        progress.enter("evaluation")
        if evaluation_loader is not None:
            epoch_record.update(score_epoch(model, objective, clusters, source, s, eval_runtime, evaluation_loader,
                                            epoch, progress.lap))
        epoch_record = {"epoch": epoch + 1, "stage": "train", **epoch_record, "phase_s": progress.rounded_phases()}
        run_log.add(epoch_record)
        log.info("epoch %d/%d: %s", epoch + 1, s.train.num_epoch, _loggable(epoch_record))
        progress.enter("checkpoint")
        centroids = objective.named_centroids(clusters.centroids)
        tb.log_epoch(epoch_record, lambda: example_maps(centroids["view1"],
                                                        epoch_record.get("view1", {}).get("cluster_to_class")))
        if dist.is_main():
            # The epoch's cluster -> class matchings go with its centroids, so predict.py can name classes.
            state = checkpoint_of(epoch + 1, centroids, epoch_matchings(epoch_record, centroids, source.class_names))
            save_checkpoint(state, checkpoint_path)
            progress.saved_epoch = epoch + 1
            keep_epoch_checkpoints(run_folder, state, epoch + 1, s.keep_checkpoints)
        dist.barrier()

    # --- 7. Final evaluation: fresh k-means on the train images, scored on val --------------------
    progress.epoch, progress.phase = None, "final evaluation"
    final = final_evaluation(model, source, s, eval_runtime, evaluation_loader, run_log, label_report, len(trainset),
                             log)
    final["git_commit"] = record["git_commit"]
    if dist.is_main():
        write_json(run_folder / "final_metrics.json", final)
        log.info("results in %s (final_metrics.json, metrics.jsonl, %s)", run_folder, CHECKPOINT_NAME)
    tb.close(final)
    return final


def train_one_epoch(pair, objective: Objective, optimizer, loader, view_maker: ViewMaker, epoch: int,
                    clusters: EpochClusters, runtime: Runtime, l2_normalize: bool, class_weights: str = "size",
                    skip_nonfinite: bool = False, should_stop: Callable[[], bool] = lambda: False) -> Dict[str, float]:
    """Step 3 of an epoch: train the network (the Siamese `pair`) against every head's pseudo-labels.

    For each batch: the two views with this epoch's transform parameters (the clustering pass's,
    reused from its cache when there), z1 = f(G(P1 x)) and z2 = G(f(P2 x)), the objective's loss
    against the frozen centroids of the epoch (within- and cross-view CE for PiCIE), one step.
    Returns averages over steps: loss, its parts (PiCIE: loss_within, loss_cross, + loss_aux for
    PiCIE+H; MDC: loss_ce), and counts of steps, skipped non-finite steps and unreadable images.
    """
    pair.train()
    objective.start_epoch(clusters.centroids, clusters.counts, class_weights, runtime.device)
    sums: Dict[str, float] = {"loss": 0.0}  # the parts' keys are added by the first step
    n_steps = n_nonfinite = n_bad_images = 0
    for batch in runtime.bar(training_batches(loader, clusters), f"epoch {epoch} train", total=len(loader)):
        n_bad_images += batch.n_skipped  # unreadable, or not labelled this epoch
        if dist.any_over_ranks(batch.indices.numel() == 0):
            continue  # every rank skips together: DDP ranks must run the same steps
        views, params = training_views(view_maker, batch, epoch, clusters, runtime)
        feats = features_of_views(pair, view_maker, *views, params, runtime, l2_normalize, objective.n_views)
        loss, parts = objective(feats, batch_labels(clusters, batch.indices, runtime.device))
        optimizer.zero_grad(set_to_none=True)
        objective.zero_grad()
        if dist.any_over_ranks(not torch.isfinite(loss)):
            if not skip_nonfinite:
                raise NonFiniteLossError(f"non-finite loss ({loss.item()}) in epoch {epoch + 1}, training step "
                                         f"{n_steps + n_nonfinite + 1} of {len(loader)}")
            n_nonfinite += 1
            if dist.is_distributed():
                (loss.nan_to_num() * 0).backward()  # DDP needs the backward its forward prepared
            optimizer.zero_grad(set_to_none=True)
            objective.zero_grad()
            continue
        loss.backward()
        optimizer.step()
        objective.step()
        n_steps += 1
        for key, value in (("loss", loss), *((f"loss_{name}", part) for name, part in parts.items())):
            sums[key] = sums.get(key, 0.0) + value.item()
        if dist.any_over_ranks(should_stop()):  # all DDP ranks stop after the same step
            break
    averages = {k: v / max(n_steps, 1) for k, v in sums.items()}
    averages.update(n_steps=n_steps, n_nonfinite_steps=n_nonfinite, n_bad_images=n_bad_images)
    return averages


def open_run(s: RunSettings, runtime: Runtime, run_folder: Path, fresh: bool) -> dict:
    """The run record (the resolved flags + git commit), once every check has passed: the folder
    created or reused (never losing what it holds), logging into its train.log, and for a fresh
    run its config.json (a restart never rewrites the record of the run it continues)."""
    prepare_run_folder(run_folder, s.restart, s.overwrite)
    log = logging.getLogger("picie")
    if dist.is_main():
        attach_log_file(run_folder / "train.log")
        remove_stale_temp_files(run_folder)
    record = dict(s.record, git_commit=git_commit())
    log.info("PiCIE run %s (git %s) on %s, autocast %s", run_folder, record["git_commit"], runtime.device,
             runtime.amp_dtype)
    log.info("config: %s", config_to_json(record))
    log.info("transforms: photometric %s, geometric %s", list(s.augment.inv_list) or "none",
             list(s.augment.eqv_list) or "none")
    if s.train.method == "picie" and not (s.augment.inv_list or s.augment.eqv_list):
        log.warning("PiCIE without a photometric or a geometric transform: both views are the same image, so the "
                    "cross-view loss is the within-view loss and nothing asks for invariance or equivariance; pass "
                    "--preset paper or --inv_list/--eqv_list (e.g. --inv_list jitter,grey,blur --eqv_list "
                    "random_crop,h_flip)")
    if fresh and dist.is_main():
        (run_folder / "config.json").write_text(config_to_json(record))
    return record


def finished(run_folder: Path, ckpt: Optional[dict], num_epoch: int, log) -> bool:
    """True (and said) when --restart finds the run done: its last epoch checkpointed and scored."""
    if ckpt is None or ckpt["epoch"] < num_epoch or not (run_folder / "final_metrics.json").is_file():
        return False
    log.info("%s is finished (epoch %d of %d, final_metrics.json): nothing to do; pass --num_epoch N to train further",
             run_folder, ckpt["epoch"], num_epoch)
    return True


def training_pair(model, runtime: Runtime) -> torch.nn.Module:
    """The Siamese pair training runs (both views in one call), under DDP on several ranks;
    clustering and evaluation use the plain network (no gradients, nothing to synchronise)."""
    pair = SiamesePair(model)
    if dist.is_distributed():
        pair = DistributedDataParallel(pair, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    return pair


def check_cluster_counts(objective: Objective, n_train_cells: int, source, s: RunSettings, stride: int) -> None:
    """Every clustering needs at least as many feature vectors as clusters (before anything runs)."""
    for head in objective.heads:
        require_points(n_train_cells, head.n_clusters, "--K_aux" if head.aux else "--K_train",
                       f"the {len(source.train_images)} training images at --res1 {s.train.res1}")
    if source.has_labels:
        cells = len(source.cluster_images) * (s.eval.res // stride) ** 2
        require_points(cells, s.eval.n_clusters, "--K_test",
                       f"the {len(source.cluster_images)} images of the final k-means at --res {s.eval.res}")


def training_loaders(trainset, s: RunSettings, runtime: Runtime):
    """(clustering loader, training loader) over the training images, in each epoch's order.
    Batch sizes are global: each of the world_size ranks takes its share of every batch."""
    cluster_loader = make_loader(trainset, dist.local_batch(s.train.batch_size_cluster),
                                 dist.EpochSampler(len(trainset), s.seed, shuffle=True), s.num_workers, runtime.device)
    train_loader = make_loader(trainset, dist.local_batch(s.train.batch_size_train),
                               dist.EpochSampler(len(trainset), s.seed, shuffle=True, reshuffle=True, even=True),
                               s.num_workers, runtime.device)
    return cluster_loader, train_loader


def build_optimizer(module: torch.nn.Module, settings: OptimSettings) -> torch.optim.Optimizer:
    """The optimiser of the parameters that train (with --freeze_backbone: the ViT's head only)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if settings.optim_type == "SGD":
        return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)


def build_or_resume(s: RunSettings, checkpoint_path: Path, runtime: Runtime, log):
    """(model, optimiser, checkpoint or None): a new network (pretrained or random init), or with
    --restart the checkpoint's network and optimiser state."""
    ckpt = load_checkpoint(checkpoint_path) if s.restart and checkpoint_path.is_file() else None
    if ckpt is None:
        model = build_model(s.model.arch, s.model.feat_dim, s.model.pretrain, s.model.pretrain_path,
                            vit_head=s.model.vit_head, freeze_backbone=s.model.freeze_backbone).to(runtime.device)
        optimizer = build_optimizer(model, s.optim)
    else:
        model = model_from_checkpoint(ckpt).to(runtime.device)
        optimizer = build_optimizer(model, s.optim)
        optimizer.load_state_dict(ckpt["optimizer"])
        log.info("resuming %s after epoch %d", checkpoint_path, ckpt["epoch"])
        match_thread_counts(ckpt.get("threads"), s.deterministic)
    n_params = sum(p.numel() for p in model.parameters())
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("network: %s, features %d channels at stride %d, %.2f M parameters (%.3f M trained); backbone weights "
             "from %s", model.config.arch, model.feat_dim, model.stride, n_params / 1e6, n_trained / 1e6,
             model.weights_source)
    return model.to(memory_format=torch.channels_last), optimizer, ckpt


def prepare_untrained(model, s: RunSettings, source, evaluation_loader, cluster_loader, view_maker: ViewMaker,
                      runtime: Runtime, eval_runtime: Runtime, run_log: RunLog, log) -> None:
    """Score the network as initialised (--eval_init) and, from random init, set its BatchNorm
    statistics from training images (--calibrate_bn, with the training runtime) and score it again. A network
    without BatchNorm (a ViT; --calibrate_bn resolves to 0 for it) skips the calibration and its score."""
    evaluate_init = s.eval_init and evaluation_loader is not None

    def evaluate_untrained(stage: str, label: str) -> None:
        started = time.perf_counter()
        scores = fresh_cluster_evaluation(model, source, s.eval, eval_runtime, evaluation_loader, desc=stage)
        log.info("%s (fresh k-means): acc %.2f mIoU %.2f", label, scores["acc"], scores["mIoU"])
        run_log.add({"epoch": 0, "stage": stage, "fresh": {k: v for k, v in scores.items() if k != "runs"},
                     "phase_s": {"final_eval": round(time.perf_counter() - started, 3)}})

    if evaluate_init:
        evaluate_untrained("init", "untrained network as initialised")
    if s.model.calibrate_bn_batches > 0 and has_batchnorm(model):
        cluster_loader.sampler.epoch = 0
        used = calibrate_batchnorm(model, cluster_loader, view_maker, runtime, s.model.calibrate_bn_batches)
        dist.average_buffers(model)
        log.info("BatchNorm statistics set from %d training images (random init; --calibrate_bn)",
                 used * dist.world_size())
        if evaluate_init:
            evaluate_untrained("init_bn", "untrained network, BatchNorm statistics re-estimated")


def score_epoch(model, objective: Objective, clusters: EpochClusters, source, s: RunSettings, runtime: Runtime,
                evaluation_loader, epoch: int, lap: Callable[[str], None]) -> Dict:
    """Step 4: each main head's frozen classifier on val ({view1, view2}: metrics), and with
    over-clustering (K_train > K_test) also a fresh K_test clustering, as the final protocol."""
    classifiers = {name: classifier_entry(c)
                   for name, c in objective.named_centroids(clusters.centroids, main_only=True).items()}
    scored = score_classifiers(model, evaluation_loader, classifiers, source, s.eval, runtime,
                               desc=f"epoch {epoch} eval")
    lap("eval")
    out = {view: _brief(metrics) for view, metrics in scored.items()}
    if s.kmeans.n_clusters > s.eval.n_clusters:
        fresh = fresh_cluster_evaluation(model, source, s.eval, runtime, evaluation_loader,
                                         desc=f"epoch {epoch} fresh", repeats=1)
        out["fresh_K_test"] = dict(_brief(fresh), matching="hungarian", K=s.eval.n_clusters,
                                   protocol="fresh k-means on un-augmented train images, 1 repeat")
        lap("eval_fresh")
    return out


def epoch_matchings(epoch_record: Dict, centroids: Dict, class_names) -> Dict[str, Dict]:
    """{head: matching} of the heads score_epoch scored (as utils/checkpoint.classifier_entry stores it)."""
    matchings = {}
    for head, scores in epoch_record.items():
        if head in centroids and isinstance(scores, dict) and "cluster_to_class" in scores:
            matchings[head] = {"cluster_to_class": scores["cluster_to_class"], "class_names": list(class_names),
                               "matching": scores.get("matching", "hungarian"),
                               "cluster_to_class_majority": scores.get("majority", {}).get("cluster_to_class")}
    return matchings


def record_bad_images(epoch_record: Dict, trainset, skipped: set, max_fraction: float, epoch: int, log) -> None:
    """Images unreadable in either pass (counted once) are not trained on this epoch; too many stop the run."""
    bad_paths = _paths(trainset, skipped)
    check_bad_images(bad_paths, len(trainset), max_fraction)
    epoch_record["n_bad_images"] = len(bad_paths)
    if bad_paths:
        epoch_record["bad_images"] = bad_paths[:100]
        log.warning("epoch %d: skipped %d unreadable training image(s): %s", epoch + 1, len(bad_paths),
                    ", ".join(bad_paths[:5]) + (", ..." if len(bad_paths) > 5 else ""))


def final_evaluation(model, source, s: RunSettings, runtime: Runtime, evaluation_loader, run_log: RunLog,
                     label_report: Dict, n_train: int, log) -> Dict:
    """Step 6: the paper's final protocol (fresh K_test k-means on the un-augmented train images,
    --repeats seeds, scored on val), with run-level counts and the untrained network's scores."""
    final = {"epochs": s.train.num_epoch, "n_train_images": n_train, "n_val_images": len(source.val_images),
             "evaluation": evaluation_record(s.eval, source)}
    epochs = [r for r in run_log.history if r.get("stage") == "train"]
    final.update(n_unreadable_train_images=max([r.get("n_bad_images", 0) for r in epochs], default=0),
                 unreadable_train_images=sorted({p for r in epochs for p in r.get("bad_images", [])}),
                 n_nonfinite_steps=sum(r.get("n_nonfinite_steps", 0) for r in epochs), label_maps=label_report)
    if evaluation_loader is not None:
        started = time.perf_counter()
        fresh = fresh_cluster_evaluation(model, source, s.eval, runtime, evaluation_loader)
        final.update(fresh, final_eval_s=round(time.perf_counter() - started, 3))
        log.info("final (fresh k-means, %d repeats): acc %.2f +- %.2f, mIoU %.2f +- %.2f", fresh["repeats"],
                 fresh["acc"], fresh["acc_std"], fresh["mIoU"], fresh["mIoU_std"])
    for stage, key in (("init", "untrained"), ("init_bn", "untrained_bn_calibrated")):
        if run_log.stage(stage):
            final[key] = run_log.stage(stage)["fresh"]
    return final


def _brief(metrics: dict) -> dict:
    keep = ("acc", "mIoU", "thing_mIoU", "stuff_mIoU", "per_class_iou", "matching", "cluster_to_class")
    brief = {k: metrics[k] for k in keep if k in metrics}
    if "majority" in metrics:  # K_train > classes: many-to-one matching, labelled by its "matching" key
        brief["majority"] = {k: metrics["majority"][k] for k in ("acc", "mIoU", "thing_mIoU", "stuff_mIoU", "matching",
                                                                 "cluster_to_class") if k in metrics["majority"]}
    return brief


def _loggable(record: dict) -> str:
    """The record as one JSON line without the long per-class lists (nested ones included)."""
    def short(value):
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items() if k not in ("per_class_iou", "cluster_to_class")}
        return value
    return json.dumps(short(record))


def _paths(dataset, indices) -> list:
    return [str(dataset.image_paths[i]) for i in sorted(indices)]


def cli(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--eval_only" in argv:  # the original's test_picie.sh calls train_picie.py --eval_only --eval_path
        import test_picie  # noqa: PLC0415 - only for this alias
        return test_picie.cli(test_picie.test_argv(argv))
    log = setup_logging()  # to the console; into the run's train.log too once its folder exists
    progress = RunProgress(resume_with=resume_command(argv))
    # Exit codes: 2 bad input, 3 non-finite numbers, 128 + signal number when stopped by a signal.
    with GracefulStop():
        try:
            args = resolve_restart(parse_args(get_args_parser(), argv), argv, log)
            settings = settings_from_args(args)
            dist.init_distributed("cuda" if settings.device != "cpu" and torch.cuda.is_available() else "cpu")
            if not dist.is_main():
                setup_logging()  # ranks other than 0 log nothing
            main(settings, progress)
        except StopRequested as exc:
            log.error(progress.stop_message(exc.signum))
            return 128 + exc.signum
        except KeyboardInterrupt:
            log.error(progress.stop_message(signal.SIGINT))
            return 128 + signal.SIGINT
        except FloatingPointError as exc:  # NonFiniteLossError, or non-finite k-means centroids
            log.error("%s; %s. Likely causes: a learning rate too high (lower --lr) or bf16 overflow (--precision "
                      "fp32); --skip_nonfinite skips such training steps instead", exc, progress.kept())
            return 3
        except UserError as exc:
            log.error("%s", exc)
            return 2
        except Exception:
            # A stop signal sent to the whole process group (e.g. by a cluster scheduler) also kills the
            # DataLoader workers, which surfaces here as a worker error: it is still the requested stop.
            if stop_requested():
                log.error(progress.stop_message(stop_requested()))
                return 128 + stop_requested()
            raise
        finally:
            dist.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(cli())

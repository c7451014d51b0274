"""Train PiCIE: python train_picie.py --preset paper --data_root datasets/coco [flags].

Each epoch: (1) cluster both views with mini-batch k-means and (2) label every pixel
(modules/pseudo_labels.py), (3) train against the labels with the within- and cross-view
balanced CE (train_one_epoch, modules/loss.py), (4) score each view's classifier, (5) checkpoint.
After the last epoch: fresh k-means on the train images, scored on val (modules/evaluation.py).
The same loop trains PiCIE+H (--overcluster) and the MDC baseline (--method mdc); what they
change is in the objective (modules/objectives.py). Flags and presets: config/. The run folder,
its logs and records: utils/run.py; errors and stop signals: utils/cli.py.
"""
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from config import (
    OptimSettings,
    RunSettings,
    TrainSettings,
    eval_config,
    get_args_parser,
    parse_args,
    resolve_restart,
    settings_from_args,
    training_memory,
)
from data.build import build_source, train_dataset
from data.transforms import ViewMaker
from data.validation import check_skipped_images, check_training_images, record_bad_images, scan_label_maps
from modules.evaluation import (
    check_fresh_kmeans,
    cluster_ids,
    evaluation_record,
    evaluation_runtime,
    example_images,
    fresh_cluster_evaluation,
    score_classifiers,
    val_loader,
)
from modules.kmeans import require_points
from modules.networks import build_model, calibrate_batchnorm, has_batchnorm, model_from_checkpoint, network_cost
from modules.objectives import Objective, build_objective
from modules.pseudo_labels import (
    EpochClusters,
    allocate_labels,
    batch_labels,
    cluster_and_label,
    training_batches,
    training_views,
)
from modules.siamese import SiamesePair, features_of_views
from utils import dist
from utils.checkpoint import (
    checkpoint_state,
    classifier_entry,
    epoch_matchings,
    keep_epoch_checkpoints,
    load_checkpoint,
    match_thread_counts,
    restore_rng,
    save_checkpoint,
)
from utils.cli import run_cli
from utils.hold import Hold
from utils.loaders import PassLoader, make_loader
from utils.run import (
    CHECKPOINT_NAME,
    RunLog,
    RunProgress,
    brief_metrics,
    check_run_folder,
    finished,
    loggable,
    open_run,
    repair_config,
    resume_command,
    setup_logging,
    write_json,
)
from utils.runtime import Runtime, configure_determinism, make_runtime, script_main, seed_everything
from utils.signals import StopRequested, stop_requested
from utils.tb import ExampleMaps, open_tensorboard


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf."""


@dataclass
class Training:
    """What every training pass of a run uses, built once by main (step 3)."""

    pair: torch.nn.Module               # the Siamese pair of the network (under DDP on several ranks)
    objective: Objective
    optimizer: torch.optim.Optimizer
    loader: PassLoader                  # the training images, reshuffled every epoch
    view_maker: ViewMaker
    runtime: Runtime
    settings: TrainSettings
    class_weights: str                  # the cross-entropy's --class_weights (modules/loss.py)


def main(s: RunSettings, progress: RunProgress | None = None) -> dict:
    """The run; `progress` is kept up to date for the messages of cli() when it stops early."""
    progress = progress if progress is not None else RunProgress()
    run_folder = Path(s.save_root) / s.run_name
    # --- 1. The run folder held (utils/hold.py); where the network runs; every check before any write --
    with Hold(run_folder, "--run_name", enabled=dist.is_main()):  # one run at a time; rank 0 for all ranks
        configure_determinism(s.deterministic)
        runtime = make_runtime(s.device, s.precision, s.deterministic)
        eval_runtime = evaluation_runtime(runtime, s.eval)  # float32 unless --eval_precision says otherwise
        check_run_folder(run_folder, s.restart, s.overwrite)
        tb = open_tensorboard(s.tensorboard, run_folder)  # a no-op without --tensorboard; writes nothing yet
        log = setup_logging() if not logging.getLogger().handlers else logging.getLogger("picie")
        seed_everything(s.seed)

        # --- 2. Data: training images (both views are made on the device), labelled val images -----
        source, trainset, cluster_loader, train_loader, evaluation_loader, label_report = load_data(s, runtime, log)

        # --- 3. Network, optimiser, views, objective (its clustering heads) ------------------------------
        checkpoint_path = progress.checkpoint = run_folder / CHECKPOINT_NAME
        model, optimizer, ckpt = build_or_resume(s, checkpoint_path, runtime, log)
        # The views' geometric parameters live on the network's feature grid (res1 / stride cells).
        view_maker = ViewMaker(s.augment, s.train.res1, s.seed, feature_stride=model.stride,
                               photometric_res=s.train.photometric_res)
        objective = build_objective(s.objective, model.feat_dim, lambda module: build_optimizer(module, s.optim),
                                    s.seed)
        check_cluster_counts(objective, len(trainset) * view_maker.grid ** 2, source, s, model.stride)
        # Memory for this resolution, batch, network and dataset, before anything is written (config/memory.py).
        training_memory(s, network_cost(model), len(trainset), [head.n_clusters for head in objective.heads],
                        runtime.device, half_precision=runtime.amp_dtype in (torch.bfloat16, torch.float16))
        if ckpt is not None and ckpt.get("args") and dist.is_main():
            repair_config(run_folder / "config.json", ckpt["args"])  # config.json broken by hand or deleted
        if finished(run_folder, ckpt, s.train.num_epoch):
            return json.loads((run_folder / "final_metrics.json").read_text())

        # --- 4. The run folder (created, or continued) and its record, the pseudo-label arrays ------------
        # What --precision auto chose is recorded: a --restart keeps it (config/restart.py).
        record = open_run(run_folder, dict(s.record, autocast=runtime.precision_name), s.restart, s.overwrite,
                          fresh=ckpt is None, where=f"{runtime.device}, autocast {runtime.amp_dtype}")
        describe_run(s, objective, log)
        start_epoch = progress.saved_epoch = ckpt["epoch"] if ckpt else None
        run_log = RunLog(run_folder, ckpt.get("history", []) if ckpt else [])
        training = Training(training_pair(model, runtime), objective, optimizer, train_loader, view_maker, runtime,
                            s.train, s.objective.class_weights)
        labels = allocate_labels(len(trainset), view_maker.grid, objective.heads,
                                 str(run_folder / f"pseudo_labels_rank{dist.rank()}"))
        checkpoint_of = checkpoint_maker(model, optimizer, record, eval_config(s, source.class_names), run_log)

        # --- 5. The untrained network for reference; BatchNorm statistics of a random init ------------
        progress.enter("initial evaluation and BatchNorm calibration")
        if ckpt is None:  # a resumed run (even from the epoch-0 checkpoint) has done this already
            prepare_untrained(model, s, source, evaluation_loader, cluster_loader, view_maker, runtime, eval_runtime,
                              run_log, log)
            if dist.is_main():  # epoch 0: a run stopped in its first epoch resumes after the calibration
                save_checkpoint(checkpoint_of(0, {}), checkpoint_path)
                run_log.commit()  # metrics.jsonl lists what the checkpoint holds, never more
                progress.saved_epoch = 0
        else:
            restore_rng(ckpt.get("rng"))  # the global RNGs as they were when the checkpoint was written

        # --- 6. Epochs: cluster and label, train, score, checkpoint -----------------------------------
        example_maps = tensorboard_maps(model, source, s, eval_runtime)
        for epoch in range(start_epoch or 0, s.train.num_epoch):
            progress.start_epoch(epoch, s.train.num_epoch)
            cluster_loader.sampler.epoch = train_loader.sampler.epoch = epoch
            dist.average_buffers(model)  # ranks' BatchNorm statistics drift apart in training
            cluster_loader.skipped.clear()
            train_loader.skipped.clear()
            progress.enter("clustering and labelling")
            clusters = cluster_and_label(model, cluster_loader, view_maker, epoch, objective.heads, labels,
                                         s.pseudo_labels, runtime, progress.lap)
            check_skipped_images(trainset.image_paths, cluster_loader.skipped, s.train.max_bad_fraction)
            progress.enter("training")
            epoch_record = train_one_epoch(training, epoch, clusters, should_stop=lambda: bool(stop_requested()))
            clusters.cache.release()  # its memory goes back before the next clustering pass and the final protocol
            if stop_requested():
                raise StopRequested(stop_requested())
            progress.lap("train")
            record_bad_images(epoch_record, trainset.image_paths, cluster_loader.skipped | train_loader.skipped,
                              s.train.max_bad_fraction, epoch, log)
            epoch_record.update(kmeans_loss=clusters.kmeans_loss, reused_features=clusters.reused_features,
                                **clusters.stats)
            progress.enter("evaluation")
            if evaluation_loader is not None:
                epoch_record.update(score_epoch(model, objective, clusters, source, s, eval_runtime, evaluation_loader,
                                                epoch, progress.lap))
            epoch_record = {"epoch": epoch + 1, "stage": "train", **epoch_record, "phase_s": progress.rounded_phases()}
            run_log.add(epoch_record)
            log.info("epoch %d/%d: %s", epoch + 1, s.train.num_epoch, loggable(epoch_record))
            progress.enter("checkpoint")
            centroids = objective.named_centroids(clusters.centroids)
            tb.log_epoch(epoch_record, partial(example_maps, centroids["view1"], epoch_record))
            if dist.is_main():
                matchings = epoch_matchings(epoch_record, centroids, source.class_names)  # for predict.py
                state = checkpoint_of(epoch + 1, centroids, matchings)
                save_checkpoint(state, checkpoint_path)
                run_log.commit()
                progress.saved_epoch = epoch + 1
                keep_epoch_checkpoints(run_folder, state, epoch + 1, s.keep_checkpoints)
            dist.barrier()

        # --- 7. Final evaluation: fresh k-means on the train images, scored on val --------------------
        progress.epoch, progress.phase = None, "final evaluation"
        final = dict(final_evaluation(model, source, s, eval_runtime, evaluation_loader, run_log, label_report,
                                      len(trainset), log), git_commit=record["git_commit"])
        if dist.is_main():
            write_json(run_folder / "final_metrics.json", final)
            written = [name for name in ("final_metrics.json", "metrics.jsonl", CHECKPOINT_NAME)
                       if (run_folder / name).is_file()]  # --num_epoch 0 without --eval_init records no metrics
            log.info("results in %s (%s)", run_folder, ", ".join(written))
        tb.close(final)
        return final


def train_one_epoch(t: Training, epoch: int, clusters: EpochClusters,
                    should_stop: Callable[[], bool] = lambda: False) -> dict[str, float]:
    """Step 3 of an epoch: train the network (the Siamese pair t.pair) against every head's pseudo-labels.

    For each batch: the two views with this epoch's transform parameters (the clustering pass's,
    reused from its cache when there), z1 = f(view 1) and z2 = G(f(view 2)) (view 1 = P1(G x) by default,
    data/transforms.py), the objective's loss
    against the frozen centroids of the epoch (within- and cross-view CE for PiCIE), one step.
    Returns averages over steps: loss, its parts (PiCIE: loss_within, loss_cross, + loss_aux for
    PiCIE+H; MDC: loss_ce), and counts of steps, skipped non-finite steps and unreadable images.
    """
    pair, objective, optimizer, loader, runtime = t.pair, t.objective, t.optimizer, t.loader, t.runtime
    pair.train()
    objective.start_epoch(clusters.centroids, clusters.counts, t.class_weights, runtime.device)
    sums: dict[str, float] = {"loss": 0.0}  # the parts' keys are added by the first step
    n_steps = n_nonfinite = n_bad_images = 0
    for batch in runtime.bar(training_batches(loader, clusters), f"epoch {epoch} train", total=len(loader)):
        n_bad_images += batch.n_skipped  # unreadable, or not labelled this epoch
        if dist.any_over_ranks(batch.indices.numel() == 0):
            continue  # every rank skips together: DDP ranks must run the same steps
        views, params = training_views(t.view_maker, batch, epoch, clusters, runtime)
        feats = features_of_views(pair, t.view_maker, *views, params, runtime, t.settings.l2_normalize,
                                  objective.n_views)
        loss, parts = objective(feats, batch_labels(clusters, batch.indices, runtime.device))
        optimizer.zero_grad(set_to_none=True)
        objective.zero_grad()
        if dist.any_over_ranks(not torch.isfinite(loss)):
            if not t.settings.skip_nonfinite:
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


def load_data(s: RunSettings, runtime: Runtime, log):
    """Step 2: (source, training images, clustering and training loaders, val loader or None,
    label-map report). Every label map and image header is checked now, so bad data stops the
    run before it starts."""
    source = build_source(s.data)
    trainset = train_dataset(source, s.train.res2)
    cluster_loader, train_loader = training_loaders(trainset, s, runtime)
    evaluation_loader = val_loader(source, s.eval, runtime) if source.has_labels else None
    log.info("data: %d training images, %d evaluation images, %d classes (%s)", len(trainset),
             len(source.val_images), source.n_classes, source.name)
    label_report = (scan_label_maps(source.val_images, source.val_labels, source.label_valid, s.eval.bad_labels,
                                    s.num_workers, source.label_lut) if source.has_labels else {})
    check_training_images(trainset.image_paths, s.train.max_bad_fraction, s.num_workers)
    return source, trainset, cluster_loader, train_loader, evaluation_loader, label_report


def tensorboard_maps(model, source, s: RunSettings, runtime: Runtime) -> Callable[[torch.Tensor, dict], object]:
    """--tensorboard's cluster maps of the first val images: (view 1's centroids, the epoch's record
    with view 1's matching) -> an image grid, drawn only when TensorBoard asks for it."""
    maps = ExampleMaps(lambda: example_images(source, s.eval), lambda images, centroids: cluster_ids(
        model, images, centroids, None, runtime, s.eval.l2_normalize).numpy(), source.n_classes)
    return lambda centroids, record: maps(centroids, record.get("view1", {}).get("cluster_to_class"))


def checkpoint_maker(model, optimizer, record: dict, evaluation: dict, run_log: RunLog) -> Callable[..., dict]:
    """(epoch, {head: centroids}, matchings=None) -> the checkpoint state every save writes: the
    network, optimiser, run record, classifiers, evaluation config and history as they are now."""
    return lambda epoch, centroids, matchings=None: checkpoint_state(
        model.config.to_dict(), model.state_dict(), optimizer.state_dict(), epoch, record, centroids, evaluation,
        run_log.history, matchings)


def describe_run(s: RunSettings, objective: Objective, log) -> None:
    """The run's transforms and clusterings, and a warning when PiCIE's two views would be the same image."""
    log.info("transforms: photometric %s, geometric %s", list(s.augment.inv_list) or "none",
             list(s.augment.eqv_list) or "none")
    if s.objective.method == "picie" and not (s.augment.inv_list or s.augment.eqv_list):
        log.warning("PiCIE without a photometric or a geometric transform: both views are the same image, so the "
                    "cross-view loss is the within-view loss and nothing asks for invariance or equivariance; pass "
                    "--preset paper or --inv_list/--eqv_list (e.g. --inv_list jitter,grey,blur --eqv_list "
                    "random_crop,h_flip)")
    log.info("method: %s, clusterings per epoch: %s", objective.name,
             ", ".join(f"{h.name} (K={h.n_clusters})" for h in objective.heads))


def training_pair(model, runtime: Runtime) -> torch.nn.Module:
    """The Siamese pair training runs (both views in one call), under DDP on several ranks;
    clustering and evaluation use the plain network (no gradients, nothing to synchronise)."""
    pair = SiamesePair(model)
    if dist.is_distributed():
        pair = DistributedDataParallel(pair,
                                       device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    return pair


def check_cluster_counts(objective: Objective, n_train_cells: int, source, s: RunSettings, stride: int) -> None:
    """Every clustering needs at least as many feature vectors as clusters (before anything runs)."""
    for head in objective.heads:
        require_points(n_train_cells, head.n_clusters, "--K_aux" if head.aux else "--K_train",
                       f"the {len(source.train_images)} training images at --res1 {s.train.res1}")
    if source.has_labels:
        check_fresh_kmeans(source, s.eval, stride)


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
                evaluation_loader, epoch: int, lap: Callable[[str], None]) -> dict:
    """Step 4: each main head's frozen classifier on val ({view1, view2}: metrics), and with
    over-clustering (K_train > K_test) also a fresh K_test clustering, as the final protocol."""
    classifiers = {name: classifier_entry(c)
                   for name, c in objective.named_centroids(clusters.centroids, main_only=True).items()}
    scored = score_classifiers(model, evaluation_loader, classifiers, source, s.eval, runtime,
                               desc=f"epoch {epoch} eval")
    lap("eval")
    out = {view: brief_metrics(metrics) for view, metrics in scored.items()}
    if s.objective.n_clusters > s.eval.n_clusters:
        fresh = fresh_cluster_evaluation(model, source, s.eval, runtime, evaluation_loader,
                                         desc=f"epoch {epoch} fresh", repeats=1)
        out["fresh_K_test"] = dict(brief_metrics(fresh), matching="hungarian", K=s.eval.n_clusters,
                                   protocol="fresh k-means on un-augmented train images, 1 repeat")
        lap("eval_fresh")
    return out


def final_evaluation(model, source, s: RunSettings, runtime: Runtime, evaluation_loader, run_log: RunLog,
                     label_report: dict, n_train: int, log) -> dict:
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


def cli(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--eval_only" in argv:  # the original's test_picie.sh calls train_picie.py --eval_only --eval_path
        import test_picie  # noqa: PLC0415 - only for this alias
        return test_picie.cli(test_picie.test_argv(argv))
    progress = RunProgress(resume_with=resume_command(argv))

    def run() -> None:
        args = resolve_restart(parse_args(get_args_parser(), argv), argv, logging.getLogger("picie"))
        settings = settings_from_args(args)
        dist.init_distributed("cuda" if settings.device != "cpu" and torch.cuda.is_available() else "cpu")
        if not dist.is_main():
            setup_logging()  # ranks other than 0 log nothing
        main(settings, progress)

    return run_cli(run, progress, nonfinite_hint="Likely causes: a learning rate too high (lower --lr) or bf16 "
                                                 "overflow (--precision fp32); --skip_nonfinite skips such training "
                                                 "steps instead")


if __name__ == "__main__":
    script_main(cli)

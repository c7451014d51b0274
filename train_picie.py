"""Train PiCIE: python train_picie.py --data_root datasets/coco --save_root results [flags].

Each epoch: (1) cluster both views with mini-batch k-means, (2) label every pixel,
(3) train against the labels with the within- and cross-view balanced CE, (4) evaluate,
(5) checkpoint. After the last epoch: fresh k-means on the train images, scored on val.
The same loop trains PiCIE+H (--overcluster) and the MDC baseline (--method mdc); what they
change is in the objective (modules/methods.py).
"""
import json
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from torch.nn.parallel import DistributedDataParallel

from data.build import build_source, train_dataset
from data.datasets import DataError
from data.validation import scan_label_maps
from modules.fpn import PretrainError, build_model
from modules.methods import build_objective
from modules.siamese import SiamesePair
from utils import dist
from utils.checkpoint import CheckpointError, build_model_from_checkpoint, load_checkpoint
from utils.config import config_to_json, finalize_args, get_args_parser
from utils.engine import KMeansSettings, allocate_labels, calibrate_batchnorm, cluster_and_label, train_one_epoch
from utils.pipeline import (build_optimizer, checkpoint_state, classifier_entry, eval_config_of,
                            fresh_cluster_evaluation, make_runtime, make_view_maker, score_classifiers,
                            seed_everything, val_loader)
from utils.reliability import (RunProgress, check_bad_images, configure_determinism, differing_flags,
                               match_thread_counts, remove_stale_temp_files, restore_rng, resume_command,
                               rewrite_metrics, save_checkpoint)
from utils.run import (CHECKPOINT_NAME, RunFolderError, append_jsonl, git_commit, make_loader,
                       prepare_run_folder, setup_logging, write_json)
from utils.signals import GracefulStop, StopRequested, stop_requested
from utils.tb import open_tensorboard

USER_ERRORS = (DataError, CheckpointError, PretrainError, RunFolderError, ValueError, FileNotFoundError)


def main(args, progress: Optional[RunProgress] = None) -> dict:
    """The run; `progress` is kept up to date for the messages of cli() when it stops early."""
    progress = progress if progress is not None else RunProgress()
    # --- 1. Config, run folder and logging ------------------------------------------------
    configure_determinism(args.deterministic)
    runtime = make_runtime(args)
    tb = open_tensorboard(args)  # a no-op without --tensorboard; fails here, before any file, if it is not installed
    run_folder = prepare_run_folder(Path(args.save_root) / args.run_name, args.restart, args.overwrite)
    log = setup_logging(run_folder / "train.log")
    if dist.is_main():
        remove_stale_temp_files(run_folder)
    args.git_commit = git_commit()
    log.info("PiCIE run %s (git %s) on %s, autocast %s", run_folder, args.git_commit, runtime.device, runtime.amp_dtype)
    log.info("config: %s", config_to_json(args))
    log.info("transforms: photometric %s, geometric %s", list(args.augment_config["inv_list"]) or "none",
             list(args.augment_config["eqv_list"]) or "none")
    if dist.is_main():
        (run_folder / "config.json").write_text(config_to_json(args))
    seed_everything(args.seed)

    # --- 2. Data ------------------------------------------------------------------------
    source = build_source(args)
    trainset = train_dataset(source, args.res2)
    # Batch sizes are global: each of the world_size ranks takes its share of every batch.
    cluster_sampler = dist.EpochSampler(len(trainset), args.seed, shuffle=True)
    train_sampler = dist.EpochSampler(len(trainset), args.seed, shuffle=True, reshuffle=True, even=True)
    cluster_loader = make_loader(trainset, dist.local_batch(args.batch_size_cluster), cluster_sampler,
                                 args.num_workers, runtime.device)
    train_loader = make_loader(trainset, dist.local_batch(args.batch_size_train), train_sampler,
                               args.num_workers, runtime.device)
    evaluation_loader = val_loader(source, args, runtime) if source.has_labels else None
    log.info("data: %d training images, %d evaluation images, %d classes (%s)", len(trainset),
             len(source.val_images), source.n_classes, source.name)
    # Every label map is checked now, so a bad one stops the run before training, not at its first evaluation.
    label_report = (scan_label_maps(source.val_images, source.val_labels, source.label_valid, args.bad_labels,
                                    args.num_workers) if source.has_labels else {})

    # --- 3. Model, optimiser, resume ----------------------------------------------------------
    view_maker = make_view_maker(args)
    start_epoch, history, ckpt = 0, [], None
    checkpoint_path = run_folder / CHECKPOINT_NAME
    progress.checkpoint = checkpoint_path
    if args.restart and checkpoint_path.is_file():
        ckpt = load_checkpoint(checkpoint_path)
        model = build_model_from_checkpoint(ckpt).to(runtime.device)
        optimizer = build_optimizer(model, args)
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, history = ckpt["epoch"], ckpt.get("history", [])
        progress.saved_epoch = start_epoch
        log.info("resumed from %s after epoch %d", checkpoint_path, start_epoch)
        for flag, now, then in differing_flags(args, ckpt.get("args", {})):
            log.warning("--%s is %s but the checkpoint's run used %s: the resumed epochs differ from an "
                        "uninterrupted run", flag, now, then)
        match_thread_counts(ckpt.get("threads"), args.deterministic)
    else:
        model = build_model(args.arch, args.in_dim, args.pretrain, args.pretrain_path).to(runtime.device)
        optimizer = build_optimizer(model, args)
    model = model.to(memory_format=torch.channels_last)
    # Training runs the Siamese pair (both views in one call) under DDP on several ranks;
    # clustering and evaluation use the plain network (no gradients, nothing to synchronise).
    pair = SiamesePair(model)
    if dist.is_distributed():
        pair = DistributedDataParallel(pair, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    eval_config = eval_config_of(args, source)
    settings = KMeansSettings(n_clusters=args.K_train, n_iter=args.kmeans_n_iter,
                              num_init_batches=args.num_init_batches, num_batches=args.num_batches,
                              pixels_per_image=args.kmeans_pixels_per_image,
                              init_all_pixels=args.kmeans_init_all_pixels, backend=args.kmeans_backend)
    objective = build_objective(args.method, args.K_train, getattr(model, "module", model).feat_dim,
                                args.K_aux if args.overcluster else 0, args.nonparametric,
                                lambda module: build_optimizer(module, args), args.seed)
    log.info("method: %s, clusterings per epoch: %s", objective.name,
             ", ".join(f"{h.name} (K={h.n_clusters})" for h in objective.heads))
    labels = allocate_labels(len(trainset), view_maker.grid, args.K_train,
                             str(run_folder / f"pseudo_labels_rank{dist.rank()}"), heads=objective.heads)
    if dist.is_main():  # one line per record of the checkpoint's history: a redone epoch is not listed twice
        dropped = rewrite_metrics(run_folder / "metrics.jsonl", history)
        if dropped:
            log.info("metrics.jsonl: dropped %d line(s) of work the interrupted run had not checkpointed", dropped)

    # --- 4. The untrained network, for reference; BatchNorm statistics of a random init ----------
    def evaluate_untrained(stage: str, label: str) -> None:
        started = time.perf_counter()
        scores = fresh_cluster_evaluation(model, source, args, runtime, evaluation_loader, desc=stage)
        log.info("%s (fresh k-means): acc %.2f mIoU %.2f", label, scores["acc"], scores["mIoU"])
        record = {"epoch": 0, "stage": stage, "fresh": {k: v for k, v in scores.items() if k != "runs"},
                  "phase_s": {"final_eval": round(time.perf_counter() - started, 3)}}
        history.append(record)
        if dist.is_main():
            append_jsonl(run_folder / "metrics.jsonl", record)

    # A resumed run (even from the epoch-0 checkpoint) has done this already: its results are in the history.
    progress.phase = "initial evaluation and BatchNorm calibration"
    evaluate_init = args.eval_init and ckpt is None and evaluation_loader is not None
    if evaluate_init:
        evaluate_untrained("init", "untrained network as initialised")
    n_calibration = args.calibrate_bn if args.calibrate_bn >= 0 else (
        0 if (args.pretrain or args.pretrain_path) else 10)
    if ckpt is None and n_calibration > 0:
        cluster_sampler.epoch = 0
        used = calibrate_batchnorm(model, cluster_loader, view_maker, runtime, n_calibration)
        dist.average_buffers(model)
        log.info("BatchNorm statistics set from %d training images (random init; --calibrate_bn)",
                 used * dist.world_size())
        if evaluate_init:
            evaluate_untrained("init_bn", "untrained network, BatchNorm statistics re-estimated")
    if ckpt is None and dist.is_main():
        # Epoch-0 checkpoint: a run stopped in its first epoch resumes after the calibration and init evaluations.
        save_checkpoint(checkpoint_state(model, optimizer, 0, args, None, eval_config, history), checkpoint_path)
        progress.saved_epoch = 0
    if ckpt is not None:
        restore_rng(ckpt.get("rng"))  # the global RNGs as they were when the checkpoint was written

    # --- 5. Epochs -------------------------------------------------------------------------
    for epoch in range(start_epoch, args.num_epoch):
        phase_s, tick = {}, [time.perf_counter()]

        def timer(phase):
            now = time.perf_counter()
            phase_s[phase] = now - tick[0]
            tick[0] = now

        cluster_sampler.epoch = train_sampler.epoch = epoch
        dist.average_buffers(model)  # ranks' BatchNorm statistics drift apart in training
        progress.epoch, progress.num_epoch, progress.phase = epoch + 1, args.num_epoch, "clustering and labelling"
        cluster_loader.skipped.clear()
        train_loader.skipped.clear()
        clusters = cluster_and_label(model, cluster_loader, view_maker, epoch, settings, runtime, labels, args.seed,
                                     args.metric_train == "cosine", args.feature_cache_gb * 2 ** 30, timer,
                                     heads=objective.heads)
        check_bad_images(_paths(trainset, cluster_loader.skipped), len(trainset), args.max_bad_fraction)
        progress.phase = "training"
        train_stats = train_one_epoch(pair, objective, optimizer, train_loader, view_maker, epoch, clusters,
                                      runtime, args.metric_train == "cosine", balance=not args.no_balance,
                                      skip_nonfinite=args.skip_nonfinite, should_stop=lambda: bool(stop_requested()))
        if stop_requested():
            raise StopRequested(stop_requested())
        timer("train")
        # Unreadable in either pass (counted once); such images are not trained on this epoch.
        bad_paths = _paths(trainset, cluster_loader.skipped | train_loader.skipped)
        check_bad_images(bad_paths, len(trainset), args.max_bad_fraction)
        train_stats["n_bad_images"] = len(bad_paths)
        if bad_paths:
            train_stats["bad_images"] = bad_paths[:100]
            log.warning("epoch %d: skipped %d unreadable training image(s): %s", epoch + 1, len(bad_paths),
                        ", ".join(bad_paths[:5]) + (", ..." if len(bad_paths) > 5 else ""))
        record = {"epoch": epoch + 1, "stage": "train", **train_stats, "kmeans_loss": clusters.kmeans_loss,
                  "reused_features": clusters.reused_features, **clusters.stats}
        progress.phase = "evaluation"
        if evaluation_loader is not None:
            scored = score_classifiers(model, evaluation_loader,
                                       {name: classifier_entry(c) for name, c in
                                        objective.named_centroids(clusters.centroids, main_only=True).items()},
                                       source, args, runtime, desc=f"epoch {epoch} eval")
            timer("eval")
            record.update({view: _brief(m) for view, m in scored.items()})
            if args.K_train > args.K_test:  # over-clustering: also K_test fresh clusters, as the final protocol
                record["fresh_K_test"] = _fresh_brief(fresh_cluster_evaluation(
                    model, source, args, runtime, evaluation_loader, desc=f"epoch {epoch} fresh", repeats=1), args.K_test)
                timer("eval_fresh")
        record["phase_s"] = {k: round(v, 3) for k, v in phase_s.items()}
        history.append(record)
        log.info("epoch %d/%d: %s", epoch + 1, args.num_epoch, json.dumps(_loggable(record)))
        progress.phase = "checkpoint"
        tb.log_epoch(record, model, clusters.centroids, source, runtime)
        if dist.is_main():
            append_jsonl(run_folder / "metrics.jsonl", record)
            state = checkpoint_state(model, optimizer, epoch + 1, args, objective.named_centroids(clusters.centroids),
                                     eval_config, history)
            save_checkpoint(state, checkpoint_path)
            progress.saved_epoch = epoch + 1
            if args.keep_checkpoints > 0:
                keep_epoch_checkpoints(run_folder, state, epoch + 1, args.keep_checkpoints)
        dist.barrier()

    # --- 6. Final evaluation: fresh k-means on the train images --------------------------
    progress.epoch, progress.phase = None, "final evaluation"
    final = {"epochs": args.num_epoch, "git_commit": args.git_commit, "n_train_images": len(trainset),
             "n_val_images": len(source.val_images)}
    final.update(_reliability_summary(history, label_report))
    if evaluation_loader is not None:
        started = time.perf_counter()
        fresh = fresh_cluster_evaluation(model, source, args, runtime, evaluation_loader)
        final.update(fresh, final_eval_s=round(time.perf_counter() - started, 3))
        log.info("final (fresh k-means, %d repeats): acc %.2f +- %.2f, mIoU %.2f +- %.2f", fresh["repeats"],
                 fresh["acc"], fresh["acc_std"], fresh["mIoU"], fresh["mIoU_std"])
    for record in history:
        if record.get("stage") == "init":
            final["untrained"] = record["fresh"]
        elif record.get("stage") == "init_bn":
            final["untrained_bn_calibrated"] = record["fresh"]
    if dist.is_main():
        write_json(run_folder / "final_metrics.json", final)
        log.info("results in %s (final_metrics.json, metrics.jsonl, %s)", run_folder, CHECKPOINT_NAME)
    tb.close(final)
    return final


def _brief(metrics: dict) -> dict:
    keep = ("acc", "mIoU", "thing_mIoU", "stuff_mIoU", "per_class_iou", "matching", "cluster_to_class")
    brief = {k: metrics[k] for k in keep if k in metrics}
    if "majority" in metrics:  # K_train > classes: many-to-one matching, labelled by its "matching" key
        brief["majority"] = {k: metrics["majority"][k] for k in ("acc", "mIoU", "thing_mIoU", "stuff_mIoU", "matching")}
    return brief


def _fresh_brief(scores: dict, n_clusters: int) -> dict:
    brief = _brief(scores)
    brief.update(matching="hungarian", K=n_clusters, protocol="fresh k-means on un-augmented train images, 1 repeat")
    return brief


def _loggable(record: dict) -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in ("per_class_iou", "cluster_to_class")}
        out[key] = value
    return out


def _paths(dataset, indices) -> list:
    return [str(dataset.image_paths[i]) for i in sorted(indices)]


def _reliability_summary(history: list, label_report: dict) -> dict:
    """Run-level counts of what was skipped or fixed (per-epoch numbers are in metrics.jsonl)."""
    epochs = [r for r in history if r.get("stage") == "train"]
    unreadable = sorted({p for r in epochs for p in r.get("bad_images", [])})
    return {"n_unreadable_train_images": max([r.get("n_bad_images", 0) for r in epochs], default=0),
            "unreadable_train_images": unreadable,
            "n_nonfinite_steps": sum(r.get("n_nonfinite_steps", 0) for r in epochs),
            "label_maps": label_report}


def keep_epoch_checkpoints(run_folder: Path, state: dict, epoch: int, keep: int) -> None:
    save_checkpoint(state, run_folder / f"checkpoint_epoch{epoch}.pth")
    old = sorted(run_folder.glob("checkpoint_epoch*.pth"), key=lambda p: int(p.stem.removeprefix("checkpoint_epoch")))
    for path in old[:-keep]:
        path.unlink()


def cli(argv=None) -> int:
    parser = get_args_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.eval_only:  # the original's test_picie.sh calls train_picie.py --eval_only --eval_path
        import test_picie  # noqa: PLC0415
        return test_picie.cli(argv)
    progress = RunProgress(resume_with=resume_command(argv))
    # Exit codes: 2 bad input, 3 non-finite numbers, 128 + signal number when stopped by a signal.
    with GracefulStop():
        try:
            args = finalize_args(args)
            dist.init_distributed("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
            main(args, progress)
        except StopRequested as exc:
            print(progress.stop_message(exc.signum), file=sys.stderr)
            return 128 + exc.signum
        except KeyboardInterrupt:
            print(progress.stop_message(signal.SIGINT), file=sys.stderr)
            return 128 + signal.SIGINT
        except FloatingPointError as exc:  # NonFiniteLossError, or non-finite k-means centroids
            print(f"error: {exc}; {progress.kept()}. Likely causes: a learning rate too high (lower --lr) or bf16 "
                  "overflow (--precision fp32); --skip_nonfinite skips such training steps instead", file=sys.stderr)
            return 3
        except USER_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception:
            # A stop signal sent to the whole process group (e.g. by a cluster scheduler) also kills the
            # DataLoader workers, which surfaces here as a worker error: it is still the requested stop.
            if stop_requested():
                print(progress.stop_message(stop_requested()), file=sys.stderr)
                return 128 + stop_requested()
            raise
        finally:
            dist.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(cli())

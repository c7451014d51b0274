"""Train PiCIE: python train_picie.py --data_root datasets/coco --save_root results [flags].

Each epoch: (1) cluster both views with mini-batch k-means, (2) label every pixel,
(3) train against the labels with the within- and cross-view balanced CE, (4) evaluate,
(5) checkpoint. After the last epoch: fresh k-means on the train images, scored on val.
"""
import json
import sys
import time
from pathlib import Path

import torch

from data.build import build_source, train_dataset
from data.datasets import DataError
from modules.fpn import PretrainError, build_model
from modules.loss import PiCIELoss
from utils import dist
from utils.checkpoint import CheckpointError, atomic_save, build_model_from_checkpoint, load_checkpoint
from utils.config import config_to_json, finalize_args, get_args_parser
from utils.engine import (KMeansSettings, NonFiniteLossError, allocate_labels, calibrate_batchnorm, cluster_and_label,
                          train_one_epoch)
from utils.pipeline import (build_optimizer, checkpoint_state, classifier_entry, eval_config_of,
                            fresh_cluster_evaluation, make_runtime, make_view_maker, score_classifiers,
                            seed_everything, val_loader)
from utils.run import (CHECKPOINT_NAME, RunFolderError, append_jsonl, git_commit, make_loader,
                       prepare_run_folder, setup_logging, write_json)
from utils.tb import open_tensorboard

USER_ERRORS = (DataError, CheckpointError, PretrainError, RunFolderError, ValueError, FileNotFoundError)


def main(args) -> dict:
    # --- 1. Config, run folder and logging ------------------------------------------------
    runtime = make_runtime(args)
    tb = open_tensorboard(args)  # a no-op without --tensorboard; fails here, before any file, if it is not installed
    run_folder = prepare_run_folder(Path(args.save_root) / args.run_name, args.restart, args.overwrite)
    log = setup_logging(run_folder / "train.log")
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
    cluster_sampler = dist.EpochSampler(len(trainset), args.seed, shuffle=True, pad=True)
    train_sampler = dist.EpochSampler(len(trainset), args.seed, shuffle=True, reshuffle=True, pad=True)
    cluster_loader = make_loader(trainset, args.batch_size_cluster, cluster_sampler, args.num_workers, runtime.device)
    train_loader = make_loader(trainset, args.batch_size_train, train_sampler, args.num_workers, runtime.device)
    evaluation_loader = val_loader(source, args, runtime) if source.has_labels else None
    log.info("data: %d training images, %d evaluation images, %d classes (%s)", len(trainset),
             len(source.val_images), source.n_classes, source.name)

    # --- 3. Model, optimiser, resume ----------------------------------------------------------
    view_maker = make_view_maker(args)
    start_epoch, history = 0, []
    checkpoint_path = run_folder / CHECKPOINT_NAME
    if args.restart and checkpoint_path.is_file():
        ckpt = load_checkpoint(checkpoint_path)
        model = build_model_from_checkpoint(ckpt).to(runtime.device)
        optimizer = build_optimizer(model, args)
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, history = ckpt["epoch"], ckpt.get("history", [])
        log.info("resumed from %s after epoch %d", checkpoint_path, start_epoch)
    else:
        model = build_model(args.arch, args.in_dim, args.pretrain, args.pretrain_path).to(runtime.device)
        optimizer = build_optimizer(model, args)
    model = model.to(memory_format=torch.channels_last)
    eval_config = eval_config_of(args, source)
    settings = KMeansSettings(n_clusters=args.K_train, n_iter=args.kmeans_n_iter,
                              num_init_batches=args.num_init_batches, num_batches=args.num_batches,
                              pixels_per_image=args.kmeans_pixels_per_image,
                              init_all_pixels=args.kmeans_init_all_pixels, backend=args.kmeans_backend)
    labels = allocate_labels(len(trainset), view_maker.grid, args.K_train, str(run_folder / "pseudo_labels"))

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

    evaluate_init = args.eval_init and start_epoch == 0 and evaluation_loader is not None
    if evaluate_init:
        evaluate_untrained("init", "untrained network as initialised")
    n_calibration = args.calibrate_bn if args.calibrate_bn >= 0 else (
        0 if (args.pretrain or args.pretrain_path) else 10)
    if start_epoch == 0 and n_calibration > 0:
        cluster_sampler.epoch = 0
        used = calibrate_batchnorm(model, cluster_loader, view_maker, runtime, n_calibration)
        log.info("BatchNorm statistics set from %d training images (random init; --calibrate_bn)", used)
        if evaluate_init:
            evaluate_untrained("init_bn", "untrained network, BatchNorm statistics re-estimated")

    # --- 5. Epochs -------------------------------------------------------------------------
    loss_fn = PiCIELoss()
    for epoch in range(start_epoch, args.num_epoch):
        phase_s, tick = {}, [time.perf_counter()]

        def timer(phase):
            now = time.perf_counter()
            phase_s[phase] = now - tick[0]
            tick[0] = now

        cluster_sampler.epoch = train_sampler.epoch = epoch
        clusters = cluster_and_label(model, cluster_loader, view_maker, epoch, settings, runtime, labels, args.seed,
                                     args.metric_train == "cosine", args.feature_cache_gb * 2 ** 30, timer)
        train_stats = train_one_epoch(model, loss_fn, optimizer, train_loader, view_maker, epoch, clusters,
                                      runtime, args.metric_train == "cosine", balance=not args.no_balance,
                                      skip_nonfinite=args.skip_nonfinite)
        timer("train")
        check_bad_images(train_stats["n_bad_images"], len(trainset), args.max_bad_fraction)
        record = {"epoch": epoch + 1, "stage": "train", **train_stats, "kmeans_loss": clusters.kmeans_loss,
                  "reused_features": clusters.reused_features, **clusters.stats}
        if evaluation_loader is not None:
            scored = score_classifiers(model, evaluation_loader,
                                       {"view1": classifier_entry(clusters.centroids[0]),
                                        "view2": classifier_entry(clusters.centroids[1])},
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
        tb.log_epoch(record, model, clusters.centroids, source, runtime)
        if dist.is_main():
            append_jsonl(run_folder / "metrics.jsonl", record)
            state = checkpoint_state(model, optimizer, epoch + 1, args, clusters.centroids, eval_config, history)
            atomic_save(state, checkpoint_path)
            if args.keep_checkpoints > 0:
                keep_epoch_checkpoints(run_folder, state, epoch + 1, args.keep_checkpoints)
        dist.barrier()

    # --- 6. Final evaluation: fresh k-means on the train images --------------------------
    final = {"epochs": args.num_epoch, "git_commit": args.git_commit, "n_train_images": len(trainset),
             "n_val_images": len(source.val_images)}
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


def check_bad_images(n_bad: int, n_total: int, max_fraction: float) -> None:
    if n_bad and n_bad > max_fraction * n_total:
        raise DataError(f"{n_bad} of {n_total} training images could not be read (more than --max_bad_fraction "
                        f"{max_fraction}); see the warnings above for the files")


def keep_epoch_checkpoints(run_folder: Path, state: dict, epoch: int, keep: int) -> None:
    atomic_save(state, run_folder / f"checkpoint_epoch{epoch}.pth")
    old = sorted(run_folder.glob("checkpoint_epoch*.pth"), key=lambda p: int(p.stem.removeprefix("checkpoint_epoch")))
    for path in old[:-keep]:
        path.unlink()


def cli(argv=None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.eval_only:  # the original's test_picie.sh calls train_picie.py --eval_only --eval_path
        import test_picie  # noqa: PLC0415
        return test_picie.cli(argv)
    try:
        args = finalize_args(args)
        dist.init_distributed("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
        main(args)
    except NonFiniteLossError as exc:
        print(f"error: {exc}; the last good checkpoint is kept. Lower --lr, or use --precision fp32 "
              "if bf16 overflowed, or --skip_nonfinite to skip such steps.", file=sys.stderr)
        return 3
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(cli())

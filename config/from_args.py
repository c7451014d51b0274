"""From the parsed flags to the typed settings the scripts and the functions of modules/ and data/
take, in one step (settings_from_args for a training run; test_target and test_settings for
test_picie.py, predict_target and predict_settings for predict.py, visualize_settings and
invariance_settings for the tools). The only module that reads a flag's value from the parsed
namespace, which is never changed.
The original's switches (--augment --jitter ..., --no_balance, --cityscapes) are translated
here, and only here."""
import argparse
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from config.checks import check_args, check_label_set, vit_head
from config.flags import FLAGS, FlagError
from config.presets import make_demo_hint
from config.settings import (
    METRICS_NAME,
    CompareSettings,
    CuratedSettings,
    DatasetPrepSettings,
    DemoDataSettings,
    FigureSettings,
    HoldoutSettings,
    InvarianceSettings,
    ModelSettings,
    MutationSettings,
    OptimSettings,
    PredictTarget,
    RunSettings,
    SeedSummarySettings,
    TestSettings,
    TestTarget,
    TrainSettings,
    VisualizeSettings,
)
from data.build import DataSettings
from data.image_files import PredictError
from data.transforms import GEOMETRIC_OPS, JITTER_OPS, PHOTOMETRIC_OPS, AugmentConfig
from modules.crf import CRFSettings
from modules.evaluation import PROTOCOL_RES, EvalSettings
from modules.kmeans import KMeansSettings
from modules.objectives import ObjectiveSettings
from modules.probe import ProbeSettings
from modules.segment import PredictSettings
from modules.vit import VIT_ARCHS
from utils.checkpoint import FORMAT as CHECKPOINT_FORMAT
from utils.errors import UserError
from utils.fetch import FetchError, FetchSettings


def _split_list(text: str) -> list[str]:
    """'a,b c' -> ['a', 'b', 'c']; 'none' or '' -> []."""
    items = [t for t in text.replace(",", " ").split() if t]
    return [] if items == ["none"] else items


def resolve_transform_lists(args) -> tuple[list[str], list[str]]:
    """Photometric and geometric lists from the original switches plus --inv_list/--eqv_list."""
    inv, eqv = [], []
    if args.augment:
        inv += list(JITTER_OPS) if args.jitter else []
        inv += ["grey"] if args.grey else []
        inv += ["blur"] if args.blur else []
    if args.equiv:
        eqv += [name for name in ("random_crop", "h_flip", "v_flip") if getattr(args, name)]
    for name in _split_list(args.inv_list or ""):
        for op in (JITTER_OPS if name == "jitter" else (name,)):
            if op not in PHOTOMETRIC_OPS:
                raise FlagError(f"--inv_list: unknown transform {op!r}; "
                                f"choose from jitter, {', '.join(PHOTOMETRIC_OPS)}")
            inv.append(op)
    for name in _split_list(args.eqv_list or ""):
        if name not in GEOMETRIC_OPS:
            raise FlagError(f"--eqv_list: unknown transform {name!r}; choose from {', '.join(GEOMETRIC_OPS)}")
        eqv.append(name)
    # Fixed canonical order so two spellings of one set give the same config.
    return [n for n in PHOTOMETRIC_OPS if n in inv], [n for n in GEOMETRIC_OPS if n in eqv]


# The original code's on/off switches of the transforms. A run records what ran once: the resolved
# lists (augment_config); of the switches only those given (transform_switches_given, e.g.
# ["--augment", "--blur"]), not eight booleans that read as "off" beside a list that has blur on.
TRANSFORM_SWITCHES = ("augment", "jitter", "grey", "blur", "equiv", "random_crop", "h_flip", "v_flip")
SWITCHES_GIVEN_KEY = "transform_switches_given"


def record_transform_switches(record: dict[str, Any]) -> dict[str, Any]:
    """A run record with the switches replaced by the list of those given."""
    given = [f"--{name}" for name in TRANSFORM_SWITCHES if record.get(name)]
    return {**{k: v for k, v in record.items() if k not in TRANSFORM_SWITCHES}, SWITCHES_GIVEN_KEY: given}


def switches_of_record(record: dict[str, Any]) -> dict[str, Any]:
    """A run record with the switches as flags again (a record of either form), for --restart."""
    if SWITCHES_GIVEN_KEY not in record:
        return record
    given = set(record[SWITCHES_GIVEN_KEY] or ())
    return {**record, **{name: f"--{name}" in given for name in TRANSFORM_SWITCHES}}


def augment_config(args) -> AugmentConfig:
    inv, eqv = resolve_transform_lists(args)
    return AugmentConfig(inv_list=tuple(inv), eqv_list=tuple(eqv), jitter_strength=args.jitter_strength,
                         hue_range=args.hue_range, jitter_p=args.jitter_p, grey_p=args.grey_p,
                         blur_p=args.blur_p, blur_sigma=tuple(args.blur_sigma), min_scale=args.min_scale)



def data_settings(args, stuff: bool | None = None, thing: bool | None = None,
                  need_train: bool = True) -> DataSettings:
    """The data of the flags; --stuff/--thing unless given here (test_picie.py takes the checkpoint's);
    need_train=False when only the evaluation split is read (scoring a stored classifier). The
    training-only --train_list_repeats is set by settings_from_args."""
    if stuff is None and thing is None:
        stuff, thing = evaluated_groups(args)
    return DataSettings(dataset="cityscapes" if args.cityscapes else args.dataset, data_root=args.data_root,
                        stuff=stuff, thing=thing, fullcoco=args.fullcoco, coco_classes=args.coco_classes,
                        cityscapes_train_splits=tuple(args.cityscapes_train_splits),
                        cityscapes_eval_splits=tuple(args.cityscapes_eval_splits), label_root=args.label_root,
                        n_classes=args.n_classes, need_train=need_train)


def evaluated_groups(args) -> tuple[bool, bool]:
    """(stuff, thing) evaluated: both when neither flag is given."""
    if args.stuff is None and args.thing is None:
        return True, True
    return bool(args.stuff), bool(args.thing)


def evaluated_classes(args, ckpt: dict[str, Any], given: Collection[str] = ()) -> tuple[bool, bool]:
    """(stuff, thing) to score a checkpoint on: --stuff/--thing given on the command line (`given`:
    the dests it set, parsers.given_flags; none for the notebook), else those the checkpoint was
    evaluated with, else all classes. A --preset's class selection does not count: a stuff-only
    checkpoint stays stuff-only."""
    if {"stuff", "thing"} & set(given):
        return bool(args.stuff), bool(args.thing)
    saved = ckpt.get("eval_config", {})
    stuff, thing = bool(saved.get("stuff", True)), bool(saved.get("thing", True))
    return (stuff, thing) if (stuff or thing) else (True, True)


def recorded_data(args, ckpt: dict[str, Any], given: Collection[str], checkpoint: str):
    """(args with the data to score `ckpt` on, how it was chosen): --data_root given on the command
    line; else the root the checkpoint's run recorded (and its --dataset, unless given); else
    --data_root's default (the original project's checkpoints record a path of another machine,
    not used). The second item ({"data_root", "data_root_from"[, "trained_data_root"]}) goes into
    the evaluation record; data_root_line prints it."""
    recorded = ckpt.get("args", {}) if ckpt.get("format") == CHECKPOINT_FORMAT else {}
    trained_root = recorded.get("data_root")
    if "data_root" in given:
        record = {"data_root": args.data_root, "data_root_from": "--data_root"}
        if trained_root and Path(trained_root).resolve() != Path(args.data_root).resolve():
            record["trained_data_root"] = trained_root
        return args, record
    if not trained_root:
        return args, {"data_root": args.data_root, "data_root_from": "--data_root's default (the checkpoint "
                                                                     "records none)"}
    if not Path(trained_root).is_dir():
        raise FlagError(f"{trained_root}, the data root recorded in {checkpoint}, is not a folder here; pass "
                        f"--data_root DIR to score it on the dataset there{make_demo_hint(trained_root)}")
    values = dict(vars(args), data_root=trained_root)
    if not {"dataset", "cityscapes"} & set(given) and recorded.get("dataset"):
        values.update(dataset=recorded["dataset"], cityscapes=False)
        if not {"label_root", "n_classes"} & set(given):  # a folder's labels go with its images
            values.update({k: recorded[k] for k in ("label_root", "n_classes") if k in recorded})
    return argparse.Namespace(**values), {"data_root": trained_root, "data_root_from": "recorded in the checkpoint"}


def data_root_line(record: dict[str, str]) -> str:
    """'data root: X (recorded in the checkpoint)', or which flag chose it and the run's own root."""
    trained = record.get("trained_data_root")
    return (f"data root: {record['data_root']} ({record['data_root_from']}"
            + (f"; the checkpoint was trained on {trained})" if trained else ")"))


def checkpoint_resolution(args, ckpt: dict[str, Any]) -> int:
    """The evaluation size to score a checkpoint at: --res, else the checkpoint's own evaluation
    size, else (original checkpoints record none) the protocol's 320. Every tool uses this."""
    return int(args.res or ckpt.get("eval_config", {}).get("res") or PROTOCOL_RES)


def kmeans_settings(args) -> KMeansSettings:
    return KMeansSettings(n_iter=args.kmeans_n_iter, num_init_batches=args.num_init_batches,
                          num_batches=args.num_batches, pixels_per_image=args.kmeans_pixels_per_image,
                          init_all_pixels=args.kmeans_init_all_pixels, backend=args.kmeans_backend)


def eval_settings(args, res: int | None = None, stuff: bool | None = None,
                  thing: bool | None = None, flip: bool = False, crf: bool = False) -> EvalSettings:
    """How to score: the flags, with the resolution and the evaluated classes given here when the
    caller resolved them (test_picie.py takes them from the checkpoint); flip and crf are flags of
    test_picie.py's parser, passed by test_settings (training scores neither)."""
    if stuff is None and thing is None:
        stuff, thing = evaluated_groups(args)
    return EvalSettings(res=res or args.res or PROTOCOL_RES, l2_normalize=args.metric_test == "cosine",
                        n_clusters=args.K_test, kmeans=kmeans_settings(args), repeats=args.repeats, seed=args.seed,
                        batch_size_test=args.batch_size_test, batch_size_cluster=args.batch_size_cluster,
                        num_workers=args.num_workers, bad_labels=args.bad_labels, stuff=stuff, thing=thing,
                        precision=args.eval_precision, flip=flip, crf=crf)


def predict_settings(args, ckpt: dict[str, Any]) -> PredictSettings:
    """predict.py's typed settings; --res defaults to the checkpoint's evaluation resolution
    (checkpoint_resolution: eval_config["res"], 320 for the original's checkpoints)."""
    return PredictSettings(res=checkpoint_resolution(args, ckpt), flip=args.flip,
                           crf=CRFSettings() if args.crf else None, matching=args.matching,
                           overlay=not args.no_overlay, overwrite=args.overwrite, batch_size=args.batch_size_test,
                           num_workers=args.num_workers, l2_normalize=args.metric_test == "cosine",
                           skip_memory_check=args.skip_memory_check)


def test_output(args) -> tuple[Path | None, str]:
    """(where test_picie.py writes its metrics JSON, the flag that chose it): --out, else
    <--save_root>/test_metrics.json (train_picie.py --eval_only passes its --save_root on), else
    nowhere (printed only)."""
    flag = "--out" if args.out else "--save_root"
    if args.out:
        return Path(args.out), flag
    return (Path(args.save_root) / METRICS_NAME if args.save_root else None), flag


def test_target(args) -> TestTarget:
    """test_picie.py's flags checked and typed before its checkpoint is read."""
    if not args.eval_path:
        raise UserError("--eval_path is required: the checkpoint to evaluate (e.g. results/<run>/checkpoint.pth)")
    check_args(args, for_training=False)
    out, out_flag = test_output(args)
    return TestTarget(eval_path=args.eval_path, out=out, out_flag=out_flag, crf=args.crf, device=args.device,
                      precision=args.precision, deterministic=args.deterministic,
                      skip_memory_check=args.skip_memory_check)


def test_settings(args, target: TestTarget, ckpt: dict[str, Any], given: Collection[str]) -> TestSettings:
    """test_picie.py's settings for the checkpoint `ckpt` (read from target.eval_path); `given`: the
    dests the command line set (parsers.given_flags). The label set is checked against the
    checkpoint; the data, --res and the evaluated classes default to what it recorded."""
    check_label_set(args, ckpt)  # a checkpoint of COCO-Stuff-171 is not scored on the 27 classes, nor the reverse
    args, data_record = recorded_data(args, ckpt, given, target.eval_path)
    stuff, thing = evaluated_classes(args, ckpt, given)
    protocol = "linear_probe" if args.linear_probe else "fresh k-means" if args.recluster else "stored classifier"
    return TestSettings(target=target, protocol=protocol,
                        eval=eval_settings(args, res=checkpoint_resolution(args, ckpt), stuff=stuff, thing=thing,
                                           flip=args.flip, crf=args.crf),
                        data=data_settings(args, stuff, thing, need_train=protocol != "stored classifier"),
                        data_record=data_record, probe=probe_settings(args),
                        k_test_unused="K_test" in given and not args.recluster)


def predict_output(args) -> Path | None:
    """predict.py's --output folder (None when not given: predict_target names the flag)."""
    return Path(args.output) if args.output else None


def predict_target(args) -> PredictTarget:
    """predict.py's flags checked and typed before its checkpoint is read (predict_settings: after)."""
    for value, flag, what in ((args.eval_path, "eval_path", "the checkpoint to segment with (e.g. "
                                                            "results/<run>/checkpoint.pth)"),
                              (args.input, "input", "image files, folders or .txt lists of image paths"),
                              (args.output, "output", "the folder the maps are written to")):
        if not value:
            raise PredictError(f"--{flag} is required: {what}")
    check_args(args, for_training=False)
    return PredictTarget(eval_path=args.eval_path, inputs=tuple(args.input), output=Path(args.output), crf=args.crf,
                         device=args.device, precision=args.precision, deterministic=args.deterministic)


def visualize_checkpoint(args) -> str:
    """tools/visualize.py's flags checked before its checkpoint is read; the checkpoint's path."""
    if not args.eval_path:
        raise UserError("--eval_path is required: the checkpoint whose clusters to draw")
    if args.n_images < 1:
        raise UserError(f"--n_images {args.n_images} must be at least 1")
    check_args(args, for_training=False)
    return args.eval_path


def visualize_settings(args, ckpt: dict[str, Any], given: Collection[str]) -> VisualizeSettings:
    """tools/visualize.py's settings for `ckpt`: the data, --res and the classes as test_picie.py
    takes them; a labelled split needs no training images, a folder without labels draws its own."""
    check_label_set(args, ckpt)
    args, data_record = recorded_data(args, ckpt, given, args.eval_path)  # the run's data unless --data_root
    stuff, thing = evaluated_classes(args, ckpt, given)
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.eval_path).parent / "cluster_maps"
    return VisualizeSettings(eval=eval_settings(args, res=checkpoint_resolution(args, ckpt), stuff=stuff, thing=thing),
                             data=data_settings(args, stuff, thing, need_train=args.dataset == "folder"),
                             data_record=data_record, n_images=args.n_images, out_dir=out_dir,
                             classifier=args.classifier, matching=args.matching, device=args.device,
                             precision=args.precision, deterministic=args.deterministic)


def invariance_settings(args) -> InvarianceSettings:
    """tools/invariance.py's settings: its own flags (checkpoints, --n_images, --res1, --res2) and
    test_picie.py's (--eval_path, --seed, --out, the runtime)."""
    paths = [Path(p) for p in args.checkpoints] or ([Path(args.eval_path)] if args.eval_path else [])
    if not paths:
        raise UserError("name one or more checkpoints (or run folders), or --eval_path CKPT")
    if args.n_images < 1:
        raise UserError(f"--n_images {args.n_images} must be at least 1")
    return InvarianceSettings(checkpoints=tuple(p / "checkpoint.pth" if p.is_dir() else p for p in paths),
                              n_images=args.n_images, res1=args.res1, res2=args.res2, seed=args.seed,
                              out=Path(args.out) if args.out else None, device=args.device,
                              precision=args.precision, deterministic=args.deterministic)


def trained_view_sizes(settings: InvarianceSettings, ckpt: dict[str, Any]) -> tuple[int, int]:
    """(res1, res2) to measure a checkpoint at: given, else its run's, else the training defaults."""
    saved = ckpt.get("args", {})
    return (settings.res1 or int(saved.get("res1", _training_default("res1"))),
            settings.res2 or int(saved.get("res2", _training_default("res2"))))


def recorded_val_data(args, ckpt: dict[str, Any], given: Collection[str], path: Path) -> DataSettings:
    """The val data a tool measures a checkpoint on: --data_root and --dataset where given (the
    tool's parser defaults them to None), else the checkpoint run's; the evaluated classes as
    test_picie.py chooses them (evaluated_classes)."""
    saved = ckpt.get("args", {})
    data_root = args.data_root or saved.get("data_root")
    if not data_root:
        raise UserError(f"{path} does not record its data: give --data_root")
    stuff, thing = evaluated_classes(args, ckpt, given)
    run_args = argparse.Namespace(**dict(vars(args), data_root=data_root,
                                         dataset=args.dataset or saved.get("dataset", DataSettings.dataset)))
    return data_settings(run_args, stuff, thing, need_train=False)


def _training_default(dest: str) -> Any:
    """A flag's default in the flag table (for records that predate the flag)."""
    return next(flag.kwargs["default"] for flag in FLAGS if flag.dest == dest)


def probe_settings(args) -> ProbeSettings:
    return ProbeSettings(epochs=args.probe_epochs, lr=args.probe_lr, cache_bytes=args.feature_cache_gb * 2 ** 30)


def default_run_name(args) -> str:
    method = args.method + ("_h" if args.overcluster else "")
    arch = args.arch + ("_frozen" if args.freeze_backbone else "")
    return f"{method}_{arch}_K{args.K_train}_seed{args.seed}"


def settings_from_args(args) -> RunSettings:
    """The typed settings of a training run from train_picie.py's parsed flags (checked first)."""
    check_args(args)
    if make_demo_hint(args.data_root):
        raise FlagError(f"--data_root {args.data_root} not found{make_demo_hint(args.data_root)}")
    augment = augment_config(args)
    data = replace(data_settings(args), train_list_repeats=args.train_list_repeats)
    run_name = args.run_name or default_run_name(args)
    # BatchNorm statistics need setting only in a randomly initialised network that has BatchNorm.
    no_batchnorm = args.arch in VIT_ARCHS
    calibrate = (args.calibrate_bn if args.calibrate_bn >= 0
                 else (0 if (args.pretrain or args.pretrain_path or no_batchnorm) else 10))
    head = vit_head(args)
    evaluation = eval_settings(args)
    record = record_transform_switches(dict(vars(args), dataset=data.dataset, stuff=data.stuff, thing=data.thing,
                                            run_name=run_name, res=evaluation.res, augment_config=augment.to_dict(),
                                            vit_head=head))
    return RunSettings(
        data=data, augment=augment,
        model=ModelSettings(args.arch, args.in_dim, args.pretrain, args.pretrain_path, calibrate,
                            vit_head=head or "linear", freeze_backbone=args.freeze_backbone),
        optim=OptimSettings(args.optim_type, args.lr, args.weight_decay, args.momentum),
        objective=ObjectiveSettings(n_clusters=args.K_train, method=args.method,
                                    aux_clusters=args.K_aux if args.overcluster else 0,
                                    nonparametric=args.nonparametric, loss_terms=args.loss_terms,
                                    class_weights="none" if args.no_balance else args.class_weights),
        kmeans=kmeans_settings(args),
        train=TrainSettings(num_epoch=args.num_epoch,
                            batch_size_cluster=args.batch_size_cluster, batch_size_train=args.batch_size_train,
                            l2_normalize=args.metric_train == "cosine",
                            skip_nonfinite=args.skip_nonfinite, feature_cache_bytes=args.feature_cache_gb * 2 ** 30,
                            max_bad_fraction=args.max_bad_fraction, res1=args.res1, res2=args.res2,
                            photometric_res=args.photometric_res),
        eval=evaluation, probe=ProbeSettings(cache_bytes=args.feature_cache_gb * 2 ** 30),
        seed=args.seed, device=args.device, precision=args.precision, deterministic=args.deterministic,
        num_workers=args.num_workers, save_root=args.save_root, run_name=run_name, restart=args.restart,
        overwrite=args.overwrite, keep_checkpoints=args.keep_checkpoints, tensorboard=args.tensorboard,
        skip_memory_check=args.skip_memory_check,
        eval_init=args.eval_init, record=record)


def eval_config(settings: RunSettings, class_names: Sequence[str]) -> dict[str, Any]:
    """What a checkpoint records about its evaluation (test_picie.py reads it back)."""
    return {"res": settings.eval.res, "metric_test": "cosine" if settings.eval.l2_normalize else "euclidean",
            "K_test": settings.eval.n_clusters, "stuff": settings.eval.stuff, "thing": settings.eval.thing,
            "dataset": settings.data.dataset, "coco_classes": settings.data.coco_classes,
            "class_names": list(class_names)}



# -- The tools' own flags (declared beside each tool's work in tools/*.py) --------------------------------

def figure_settings(args) -> FigureSettings:
    """tools/make_figures.py's settings."""
    if args.n_images < 1:
        raise UserError(f"--n_images {args.n_images} must be at least 1")
    return FigureSettings(demo_root=Path(args.demo_root), checkpoint=Path(args.checkpoint),
                          coco_root=Path(args.coco_root), out=Path(args.out) if args.out else None,
                          to_docs=args.docs, n_images=args.n_images, seed=args.seed, kmeans_iter=args.kmeans_iter,
                          coco_res=args.coco_res, device=args.device)


def demo_data_settings(args) -> DemoDataSettings:
    """tools/make_demo.py's settings (the parser already holds a --preset's values as its defaults)."""
    return DemoDataSettings(root=Path(args.root), n_train=args.n_train, n_val=args.n_val, seed=args.seed,
                            overwrite=args.overwrite)


def seed_summary_settings(args) -> SeedSummarySettings:
    """tools/seed_summary.py's settings."""
    if args.invariance is not None and not args.invariance.is_file():
        raise UserError(f"--invariance {args.invariance} not found; write it with python -m tools.invariance "
                        f"RUNS --out {args.invariance.with_suffix('')}")
    return SeedSummarySettings(runs=tuple(args.runs), reference=args.reference, invariance=args.invariance,
                               out=args.out)


def compare_settings(args) -> CompareSettings:
    """tools/compare_runs.py's settings."""
    return CompareSettings(runs=tuple(Path(p) for p in args.runs), out=Path(args.out), title=args.title)


def holdout_settings(args) -> HoldoutSettings:
    """tools/make_holdout.py's settings (the parser makes --n_holdout and --fraction exclusive)."""
    return HoldoutSettings(data_root=args.data_root, out=args.out, n_holdout=args.n_holdout, fraction=args.fraction,
                           seed=args.seed)


def curated_settings(args) -> CuratedSettings:
    """tools/make_curated.py's settings."""
    if not (args.data_root / "annotations").is_dir():
        raise UserError(f"--data_root {args.data_root}: no annotations folder; give a COCO-Stuff root "
                        "(docs/datasets.md)")
    return CuratedSettings(data_root=args.data_root, splits=tuple(args.splits), min_size=args.min_size,
                           min_stuff_frac=args.min_stuff_frac, workers=args.workers,
                           out_dir=args.out_dir if args.out_dir is not None else args.data_root)


def _prep_settings(args, published_counts: dict[str, int], curated: Path | None) -> DatasetPrepSettings:
    """The flags of config/parsers.py: add_fetch_flags; published_counts: the images per split of the
    dataset as published, which --expect_counts overrides."""
    if args.from_dir is not None and not args.from_dir.is_dir():
        raise FetchError(f"--from {args.from_dir}: no such folder; give the folder that holds the archives")
    if args.retries < 0:
        raise FetchError(f"--retries {args.retries}: give 0 or more")
    counts = dict(published_counts)
    for item in args.expect_counts or ():
        split, _, number = item.partition("=")
        if split not in published_counts or not number.isdigit():
            raise FetchError(f"--expect_counts {item}: give SPLIT=N with SPLIT one of {', '.join(published_counts)}")
        counts[split] = int(number)
    fetch = FetchSettings(root=args.root, archive_dir=args.archive_dir or args.root / "archives",
                          from_dir=args.from_dir, base_url=args.base_url, retries=args.retries,
                          retry_wait_s=args.retry_wait_s, free_bytes=args.free_bytes,
                          delete_archives=args.delete_archives)
    return DatasetPrepSettings(fetch=fetch, counts=counts, curated=curated)


def coco_prep_settings(args, published_counts: dict[str, int]) -> DatasetPrepSettings:
    """tools/get_coco.py's settings: the shared preparation flags and --curated."""
    return _prep_settings(args, published_counts, args.curated)


def cityscapes_prep_settings(args, published_counts: dict[str, int]) -> DatasetPrepSettings:
    """tools/get_cityscapes.py's settings: the shared preparation flags (Cityscapes has no curated lists)."""
    return _prep_settings(args, published_counts, None)


def mutation_settings(args) -> MutationSettings:
    """tools/mutation_check.py's settings."""
    return MutationSettings(list_only=args.list, match=args.match)


def output_path(args) -> Path:
    """The one path a single-output tool takes (tools/write_fine_to_coarse.py: --out)."""
    return Path(args.out)


def run_folder_arg(args) -> Path:
    """The run folder a tool reads (tools/demo_summary.py: RUN)."""
    return Path(args.run)

"""Segment your own images with a PiCIE checkpoint (this toolkit's or the original project's).

    python predict.py --eval_path results/<run>/checkpoint.pth --input photos/ more.jpg list.txt --output maps/

Writes, per image, maps/<name>.png (class index per pixel at the image's full resolution) and
maps/<name>_overlay.jpg, and maps/legend.png and maps/predict.json (what the indices mean).
Indices are class ids when the checkpoint stores a cluster -> class matching (train_picie.py
stores the one of its last evaluation), else cluster ids; 255 marks pixels of a cluster no
class was matched to. --res (default: the checkpoint's evaluation resolution) is the shorter
side the network sees; images are not cropped. --flip, --crf, --device, --batch_size_test and
--num_workers work as in test_picie.py. Unreadable files are skipped and named at the end; an
existing output stops the run before anything is written, unless --overwrite. How names,
batches and sizes are chosen: modules/segment.py (inputs and output names: data/image_files.py).
"""
from collections.abc import Sequence

import torch

from config import eval_settings, get_predict_parser, parse_args, predict_output, predict_settings, predict_target
from data.image_files import check_output_folder
from modules.crf import require_crf
from modules.evaluation import evaluation_runtime
from modules.networks import model_from_checkpoint
from modules.segment import PredictReport, describe, segment_images
from utils.checkpoint import load_checkpoint
from utils.cli import run_cli
from utils.hold import Hold
from utils.run import setup_logging
from utils.runtime import make_runtime, script_main


def main(args) -> PredictReport:
    """Segment --input with --eval_path; the parsed flags go to config/from_args.py only."""
    log = setup_logging()
    target = predict_target(args)
    check_output_folder(target.output)
    if target.crf:
        require_crf()  # before the checkpoint is read: a missing package is found in a second
    ckpt = load_checkpoint(target.eval_path)
    settings = predict_settings(args, ckpt)
    # The evaluation's precision (--eval_precision, float32 by default), as test_picie.py scores.
    runtime = evaluation_runtime(make_runtime(target.device, target.precision, target.deterministic),
                                 eval_settings(args, res=settings.res))
    model = model_from_checkpoint(ckpt, runtime.device).to(memory_format=torch.channels_last)
    log.info("segmenting with %s (%s, epoch %s) at --res %d%s%s", target.eval_path, ckpt["format"], ckpt.get("epoch"),
             settings.res, ", --flip" if settings.flip else "", ", --crf" if settings.crf else "")
    report = segment_images(model, ckpt, target.inputs, target.output, settings, runtime,
                            checkpoint_path=str(target.eval_path))
    for line in describe(report, target.output):
        log.info("%s", line)
    return report


def cli(argv: Sequence[str] | None = None) -> int:
    args = parse_args(get_predict_parser(), argv)

    def run() -> None:
        # One run at a time writes into an --output folder (utils/hold.py).
        with Hold(predict_output(args), "--output"):
            main(args)

    return run_cli(run)


if __name__ == "__main__":
    script_main(cli)

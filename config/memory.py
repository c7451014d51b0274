"""The memory checks of the three scripts: the settings turned into utils/memory.py's estimates,
compared with what the machine has before any work (before a run folder, a checkpoint or an
output is written), one line naming the flag to lower and the largest value that fits.

    training (train_picie.py):  --res1 (with --res2 scaled alike), else --batch_size_train
    evaluation (test_picie.py, and train_picie.py's evaluations): --res, else --batch_size_test
predict.py's check (--res, else the largest image) is modules/segment.py: check_prediction_memory.
"""
import logging
from typing import Dict, Optional, Sequence

from modules.evaluation import EvalSettings
from modules.kmeans import KMeansSettings
from utils.memory import (EVALUATION_ON_DEVICE, TRAINING_ON_DEVICE, Available, NetworkCost, check_fits,
                          evaluation_parts, format_parts, training_parts)

log = logging.getLogger("picie")
LOADER_BATCHES = 2     # a batch in use and about one more in flight (utils/loaders.py bounds the prefetch)
SMALLEST_RES = 32      # config/checks.py: every resolution is at least 32


def init_points(kmeans: KMeansSettings, batch_cluster: int, n_cells: int) -> int:
    """Points per head of the initial k-means sample."""
    per_image = n_cells if kmeans.init_all_pixels else min(kmeans.pixels_per_image, n_cells)
    return kmeans.num_init_batches * batch_cluster * per_image


def training_memory(s, net: NetworkCost, n_images: int, head_clusters: Sequence[int], device,
                    half_precision: bool = False, available: Optional[Available] = None) -> Dict[str, float]:
    """Check that training with RunSettings `s` (on `device`; half_precision: under a 16-bit
    autocast) fits (MemoryLimitError otherwise, unless --skip_memory_check); returns the
    breakdown at the run's --res1."""
    available = available or Available.now(device)
    slots = 2 if s.optim.optim_type == "Adam" else (1 if s.optim.momentum else 0)
    ratio = s.train.res2 / s.train.res1

    def parts_at(res1: int) -> Dict[str, float]:
        cells = (res1 // net.stride) ** 2
        return training_parts(net, n_images, res1, int(res1 * ratio), s.train.batch_size_cluster,
                              s.train.batch_size_train, head_clusters, s.train.feature_cache_bytes,
                              init_points(s.kmeans, s.train.batch_size_cluster, cells), slots, LOADER_BATCHES,
                              half_precision)

    parts = check_fits("training", parts_at, s.train.res1, "--res1", TRAINING_ON_DEVICE, available, net.stride,
                       max(SMALLEST_RES, net.stride), other="--batch_size_train and --batch_size_cluster",
                       skip=s.skip_memory_check)
    log.info("memory estimate of training at --res1 %d: %s", s.train.res1, format_parts(parts))
    evaluation_memory(s.eval, net, device, s.skip_memory_check, available)
    return parts


def evaluation_memory(settings: EvalSettings, net: NetworkCost, device, skip: bool,
                      available: Optional[Available] = None) -> Dict[str, float]:
    """Check that an evaluation with `settings` fits; returns the breakdown at its --res."""
    available = available or Available.now(device)

    def parts_at(res: int) -> Dict[str, float]:
        cells = (res // net.stride) ** 2
        return evaluation_parts(net, res, settings.batch_size_test, settings.n_clusters,
                                init_points(settings.kmeans, settings.batch_size_cluster, cells), LOADER_BATCHES)

    return check_fits("evaluation", parts_at, settings.res, "--res", EVALUATION_ON_DEVICE, available, net.stride,
                      max(SMALLEST_RES, net.stride), other="--batch_size_test", skip=skip)

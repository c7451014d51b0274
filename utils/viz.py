"""Drawing helpers shared by tools/visualize.py, the TensorBoard cluster maps and visualize.ipynb.

Everything here turns arrays of ids into numpy colour arrays (colours in [0, 1]); nothing opens
a window, so callers choose the backend (Agg for files, inline in the notebook). What the ids
are (clusters predicted by modules/evaluation.py's `cluster_ids`) is decided by the callers.
"""
from collections.abc import Sequence

import numpy as np
import torch

UNMATCHED = (0.5, 0.5, 0.5)      # a cluster no class was matched to
IGNORED = (0.0, 0.0, 0.0)        # unlabelled pixels (label 255 -> -1)
CORRECT = (0.1, 0.75, 0.2)
WRONG = (0.85, 0.1, 0.1)


def class_palette(n_colours: int) -> np.ndarray:
    """n distinct RGB colours [n, 3] in [0, 1]: matplotlib's tab20 + tab20b without tab20's two
    greys (grey means "unmatched cluster"), then evenly spaced hues.

    Written out instead of asking matplotlib, so this module does not need it (TensorBoard logging
    draws the same colours) and the colours never depend on a matplotlib version."""
    base = [
        (0.122, 0.467, 0.706), (0.682, 0.780, 0.910), (1.000, 0.498, 0.055), (1.000, 0.733, 0.471),
        (0.173, 0.627, 0.173), (0.596, 0.875, 0.541), (0.839, 0.153, 0.157), (1.000, 0.596, 0.588),
        (0.580, 0.404, 0.741), (0.773, 0.690, 0.835), (0.549, 0.337, 0.294), (0.769, 0.612, 0.580),
        (0.890, 0.467, 0.761), (0.969, 0.714, 0.824),
        (0.737, 0.741, 0.133), (0.859, 0.859, 0.553), (0.090, 0.745, 0.812), (0.620, 0.855, 0.898),
        (0.224, 0.231, 0.475), (0.322, 0.329, 0.639), (0.420, 0.431, 0.812), (0.612, 0.620, 0.871),
        (0.388, 0.475, 0.224), (0.549, 0.635, 0.322), (0.710, 0.812, 0.420), (0.808, 0.859, 0.612),
        (0.549, 0.427, 0.192), (0.741, 0.620, 0.224), (0.906, 0.729, 0.322), (0.906, 0.796, 0.580),
        (0.518, 0.235, 0.224), (0.678, 0.286, 0.290), (0.839, 0.380, 0.420), (0.906, 0.588, 0.612),
        (0.482, 0.255, 0.451), (0.647, 0.318, 0.580), (0.808, 0.427, 0.741), (0.871, 0.620, 0.839),
    ]
    colours = list(base)
    for i in range(max(0, n_colours - len(base))):
        colours.append(_hsv_to_rgb(i / max(1, n_colours - len(base)), 0.75, 0.9))
    return np.asarray(colours[:n_colours], dtype=np.float32)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def colour_map(ids: np.ndarray, palette: np.ndarray, ignore_colour=IGNORED) -> np.ndarray:
    """[H, W] ids (negative = ignore) -> [H, W, 3] colours."""
    ids = np.asarray(ids)
    out = np.empty((*ids.shape, 3), dtype=np.float32)
    out[:] = ignore_colour
    valid = ids >= 0
    out[valid] = palette[ids[valid]]
    return out


def matched_colours(clusters: np.ndarray, class_of_cluster: Sequence[int], palette: np.ndarray) -> np.ndarray:
    """Clusters [H, W] coloured by the class each was matched to; unmatched clusters grey."""
    class_of_cluster = np.asarray(class_of_cluster)
    matched = class_of_cluster[clusters]
    out = colour_map(matched, palette)
    out[matched < 0] = UNMATCHED
    return out


def correctness(clusters: np.ndarray, class_of_cluster: Sequence[int], label: np.ndarray) -> np.ndarray:
    """Green where the matched class equals the label, red where not, black where unlabelled."""
    matched = np.asarray(class_of_cluster)[clusters]
    out = np.zeros((*label.shape, 3), dtype=np.float32)
    out[(label >= 0) & (matched == label)] = CORRECT
    out[(label >= 0) & (matched != label)] = WRONG
    return out


def pixel_accuracy(clusters: np.ndarray, class_of_cluster: Sequence[int], label: np.ndarray) -> float:
    """Percent of labelled pixels whose matched class is right (nan without labelled pixels)."""
    labelled = label >= 0
    if not labelled.any():
        return float("nan")
    return 100.0 * float((np.asarray(class_of_cluster)[clusters][labelled] == label[labelled]).mean())


def cluster_panels(image: torch.Tensor, clusters: np.ndarray, label: np.ndarray | None,
                   class_of_cluster: Sequence[int] | None, palette: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(title, [H, W, 3] array) panels of one image: image | ground truth | matched clusters |
    correct/wrong when there are labels and a matching, otherwise image | clusters."""
    panels = [("image", image.permute(1, 2, 0).numpy().astype(np.float32) / 255)]
    if label is not None and class_of_cluster is not None and (label >= 0).any():
        acc = pixel_accuracy(clusters, class_of_cluster, label)
        panels += [("ground truth", colour_map(label, palette)),
                   ("clusters (matched class)", matched_colours(clusters, class_of_cluster, palette)),
                   (f"correct / wrong ({acc:.0f}%)", correctness(clusters, class_of_cluster, label))]
    else:
        panels.append(("clusters", colour_map(clusters, class_palette(int(clusters.max()) + 1))))
    return panels


def panel_grid(rows: Sequence[Sequence[np.ndarray]], gap: int = 4) -> np.ndarray:
    """One image of panels ([H, W, 3] each, same size), a row per entry of `rows`, with white
    strips between panels and rows so they are told apart; values clipped to [0, 1]."""
    lines = [np.concatenate(_with_gaps(list(panels), axis=1, gap=gap), axis=1) for panels in rows]
    return np.clip(np.concatenate(_with_gaps(lines, axis=0, gap=gap), axis=0), 0, 1)


def _with_gaps(arrays: list[np.ndarray], axis: int, gap: int = 4) -> list[np.ndarray]:
    """The arrays with white strips between them (so panels are told apart)."""
    out = []
    for i, array in enumerate(arrays):
        if i:
            shape = list(array.shape)
            shape[axis] = gap
            out.append(np.ones(shape, dtype=np.float32))
        out.append(array)
    return out

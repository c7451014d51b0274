"""PiCIE's training loss: balanced cross-entropy against k-means pseudo-labels, within and
across the two views, with frozen classifiers made of the k-means centroids.

    within = 1/2 [CE(C1 z1, y1) + CE(C2 z2, y2)]
    cross  = 1/2 [CE(C2 z1, y2) + CE(C1 z2, y1)]
    loss   = 1/2 (within + cross)

C_v is a frozen 1x1 conv whose weights are view v's centroids (bias zero): logits = <z, c_k>.
CE of view v's labels is weighted by that view's class weights w_k, by `--class_weights`:
    size     w_k = n_k / sum_j n_j       (cluster sizes / total, exactly as the original passes them to
                                          CrossEntropyLoss: large clusters weigh more)
    inverse  w_k = N / (K' n_k)          (inverse frequency over the K' non-empty clusters, mean 1: every
                                          cluster weighs the same in total)
    none     w_k = 1                     (`--no_balance`, the original's switch)
Component ablations (`--loss_terms`): within only, or cross only, instead of their mean.
"""

import torch
import torch.nn.functional as F
from torch import nn


def centroid_logits(feats: torch.Tensor, centroids: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Frozen centroid classifier: feats [B, C, H, W], centroids [K, C] -> logits [B, K, H, W]."""
    logits = torch.einsum("bchw,kc->bkhw", feats, centroids.to(feats.dtype))
    if bias is not None:
        logits = logits + bias.to(logits.dtype).view(1, -1, 1, 1)
    return logits


CLASS_WEIGHTS = ("size", "inverse", "none")
# --loss_terms: which terms form the loss (the paper: their mean); the only spelling of each.
WITHIN_CROSS, WITHIN, CROSS = "within_cross", "within", "cross"
LOSS_TERMS = (WITHIN_CROSS, WITHIN, CROSS)


def class_weights(counts: torch.Tensor, mode: str = "size") -> torch.Tensor | None:
    """Cross-entropy class weights [K] from cluster sizes [K] (see the module docstring); None for "none".
    An empty cluster gets weight 0 (no pixel has its label)."""
    counts = counts.double()
    if mode == "size":
        return (counts / counts.sum().clamp_min(1)).float()
    if mode == "inverse":
        nonempty = counts > 0
        weights = torch.zeros_like(counts)
        weights[nonempty] = counts.sum() / (int(nonempty.sum()) * counts[nonempty])
        return weights.float()
    if mode == "none":
        return None
    raise ValueError(f"class weights {mode!r}: choose one of {', '.join(CLASS_WEIGHTS)}")


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           weight: torch.Tensor | None = None) -> torch.Tensor:
    """F.cross_entropy(logits [B, K, H, W], labels int64 [B, H, W], weight [K]): the weighted mean.

    Under torch.use_deterministic_algorithms (--deterministic) the weighted mean is formed as
    sum(w[y] * ce) / sum(w[y]) from per-pixel losses: CUDA's fused weighted loss sums with atomics
    and has no deterministic version, and with it two --deterministic GPU runs differed (H100,
    final mIoU 16.57 vs 16.64); with this form they were bit-identical, resumed runs included.
    """
    if weight is None or not torch.are_deterministic_algorithms_enabled():
        return F.cross_entropy(logits, labels, weight=weight)
    pixel_weights = weight[labels]
    return (F.cross_entropy(logits, labels, reduction="none") * pixel_weights).sum() / pixel_weights.sum()


class PiCIELoss(nn.Module):
    """Within-view + cross-view balanced CE. Feature maps are L2-normalised by the caller
    (cosine metric) and pixel-aligned: z2 already has G applied. `terms` (WITHIN_CROSS, the
    paper's; WITHIN or CROSS for the component ablations) says which terms form the loss;
    both parts are always returned, for the log."""

    def __init__(self, terms: str = WITHIN_CROSS):
        super().__init__()
        if terms not in LOSS_TERMS:
            raise ValueError(f"loss terms {terms!r}: choose one of {', '.join(LOSS_TERMS)}")
        self.terms = terms

    def forward(self, feats_view1: torch.Tensor, feats_view2: torch.Tensor,
                centroids_view1: torch.Tensor, centroids_view2: torch.Tensor,
                labels_view1: torch.Tensor, labels_view2: torch.Tensor,
                weights_view1: torch.Tensor | None = None,
                weights_view2: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """feats [B, C, H, W]; centroids [K, C]; labels int64 [B, H, W]; weights [K] or None.
        Returns (loss, {"within", "cross"}) as scalar tensors."""
        # Cross-entropy in float32 even under autocast: the logits of 1e5+ pixels are summed.
        logits_11 = centroid_logits(feats_view1, centroids_view1).float()
        logits_22 = centroid_logits(feats_view2, centroids_view2).float()
        logits_12 = centroid_logits(feats_view1, centroids_view2).float()
        logits_21 = centroid_logits(feats_view2, centroids_view1).float()
        within = 0.5 * (weighted_cross_entropy(logits_11, labels_view1, weights_view1)
                        + weighted_cross_entropy(logits_22, labels_view2, weights_view2))
        cross = 0.5 * (weighted_cross_entropy(logits_12, labels_view2, weights_view2)
                       + weighted_cross_entropy(logits_21, labels_view1, weights_view1))
        loss = {WITHIN_CROSS: 0.5 * (within + cross), WITHIN: within, CROSS: cross}[self.terms]
        return loss, {WITHIN: within.detach(), CROSS: cross.detach()}

"""The training objectives of the methods this toolkit trains: PiCIE, PiCIE+H and MDC.

One training loop (train_picie.py) serves every method; an objective says only what differs:

- `heads`: the k-means clusterings of an epoch, each a (view, K) pair. The clustering pass runs
  one online k-means per head on the features of its view and labels every pixel per head;
- `n_views`: how many views the network sees (PiCIE 2, MDC 1: view 2 is never forwarded);
- the loss of a batch from the features of the views and the pseudo-labels of every head;
- trainable parameters of its own, with their own optimiser (MDC's classifier).

PiCIE:   heads view1/K, view2/K; loss = within- + cross-view balanced CE with frozen centroid
         classifiers (modules/loss.py).
PiCIE+H: adds heads view1_aux/K_aux and view2_aux/K_aux, clustered on the same features, and a
         second PiCIE loss with them; the two losses are summed (as in the paper; the sum, not
         the mean, keeps the K_train term at the same weight as in plain PiCIE). Evaluation uses
         the K_train heads.
MDC:     (modified DeepCluster) head view1/K on one view, z1 = f(view 1) (P1(G x) by default);
         balanced CE of a 1x1 conv classifier trained jointly with the network, re-initialised every epoch (the
         clusters of a new epoch are numbered afresh) with its own optimiser; with
         `nonparametric`, the frozen centroids instead.
"""
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from modules.loss import WITHIN_CROSS, PiCIELoss, centroid_logits, class_weights
from utils import dist
from utils.errors import UserError

METHODS = ("picie", "mdc")
# Offset of the k-means seeds of the auxiliary heads, so they never repeat a main head's seed.
AUX_SEED_OFFSET = 10 ** 6


@dataclass(frozen=True)
class ObjectiveSettings:
    """Which objective a run trains: --method, PiCIE+H's K_aux (0: plain PiCIE; --overcluster),
    MDC's --nonparametric, PiCIE's --loss_terms and the cross-entropy's --class_weights
    (modules/loss.py). The defaults are the flags' (config/flags.py reads them from here)."""

    n_clusters: int                    # K_train: clusters of each main head (--K_train)
    method: str = "picie"
    aux_clusters: int = 0
    nonparametric: bool = False
    loss_terms: str = WITHIN_CROSS
    class_weights: str = "size"


@dataclass(frozen=True)
class Head:
    """One clustering of an epoch: which view's features, how many clusters, and the name its
    classifier gets in checkpoints (view1, view2, view1_aux, view2_aux)."""

    view: int          # 0: view 1, 1: view 2
    n_clusters: int
    name: str
    aux: bool = False

    def kmeans_seed(self, seed: int, epoch: int) -> int:
        return seed * 1000 + epoch * 2 + self.view + (AUX_SEED_OFFSET if self.aux else 0)


def picie_heads(n_clusters: int, n_views: int = 2, aux_clusters: int = 0) -> tuple[Head, ...]:
    """Main heads (one per view, n_clusters each), then auxiliary heads if aux_clusters > 0."""
    heads = [Head(view, n_clusters, f"view{view + 1}") for view in range(n_views)]
    if aux_clusters:
        heads += [Head(view, aux_clusters, f"view{view + 1}_aux", aux=True) for view in range(n_views)]
    return tuple(heads)


class Objective:
    """Base: frozen centroid classifiers, no parameters of its own. Subclasses set heads and
    implement `loss`. Call `start_epoch` once the epoch's clusters exist, then once per batch
    `__call__`, and around the network's optimiser step `zero_grad` / `step`."""

    name = "objective"
    heads: tuple[Head, ...] = ()

    def __init__(self):
        self.centroids: list[torch.Tensor] = []
        self.weights: list[torch.Tensor | None] = []

    @property
    def n_views(self) -> int:
        return max(head.view for head in self.heads) + 1

    @property
    def main_heads(self) -> tuple[Head, ...]:
        return tuple(head for head in self.heads if not head.aux)

    def start_epoch(self, centroids: Sequence[torch.Tensor], counts: Sequence[torch.Tensor], weighting: str,
                    device: torch.device) -> None:
        """centroids [K_h, C] and cluster sizes [K_h] per head, from this epoch's k-means;
        weighting: the class weights of the cross-entropy (size, inverse or none; modules/loss.py)."""
        if len(centroids) != len(self.heads):
            raise ValueError(f"{self.name}: {len(centroids)} clusterings for {len(self.heads)} heads")
        self.centroids = [c.to(device) for c in centroids]
        self.weights = [None if w is None else w.to(device) for w in (class_weights(c, weighting) for c in counts)]

    def __call__(self, feats: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """feats: per view [B, C, h, w] (pixel-aligned); labels: per head int64 [B, h, w].
        Returns (loss, named detached parts)."""
        return self.loss(feats, labels)

    def loss(self, feats, labels):
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Clear the gradients of the objective's own parameters (none by default)."""

    def step(self) -> None:
        """Optimiser step of the objective's own parameters (none by default)."""

    def named_centroids(self, centroids: Sequence[torch.Tensor], main_only: bool = False) -> dict[str, torch.Tensor]:
        """{head name: centroids [K, C]}: the classifiers stored in checkpoints (all heads) or
        scored each epoch (main_only: the K_train heads)."""
        return {head.name: c for head, c in zip(self.heads, centroids, strict=True) if not (main_only and head.aux)}


class PiCIEObjective(Objective):
    """PiCIE, and PiCIE+H when aux_clusters > 0 (a second PiCIE loss on K_aux clusterings)."""

    def __init__(self, n_clusters: int, aux_clusters: int = 0, loss_terms: str = WITHIN_CROSS):
        super().__init__()
        self.name = "picie_h" if aux_clusters else "picie"
        self.heads = picie_heads(n_clusters, 2, aux_clusters)
        self.picie_loss = PiCIELoss(loss_terms)

    def loss(self, feats, labels):
        feats_view1, feats_view2 = feats
        loss, parts = self.picie_loss(feats_view1, feats_view2, self.centroids[0], self.centroids[1],
                                      labels[0], labels[1], self.weights[0], self.weights[1])
        parts = dict(parts)
        if len(self.heads) == 4:
            aux_loss, _ = self.picie_loss(feats_view1, feats_view2, self.centroids[2], self.centroids[3],
                                          labels[2], labels[3], self.weights[2], self.weights[3])
            loss = loss + aux_loss  # summed, as in the paper (see module docstring)
            parts["aux"] = aux_loss.detach()
        return loss, parts


def new_mdc_classifier(feat_dim: int, n_clusters: int, generator: torch.Generator) -> nn.Conv2d:
    """1x1 conv C -> K with weights N(0, 0.01) and zero bias, DeepCluster's re-initialisation
    of its top layer; drawn from `generator` so a run is reproducible."""
    classifier = nn.Conv2d(feat_dim, n_clusters, kernel_size=1)
    with torch.no_grad():
        classifier.weight.copy_(torch.randn(classifier.weight.shape, generator=generator) * 0.01)
        classifier.bias.zero_()
    return classifier


class MDCObjective(Objective):
    """Modified DeepCluster: one view, balanced CE against its own k-means labels, with a
    parametric classifier (re-initialised each epoch, own optimiser) or the frozen centroids."""

    def __init__(self, n_clusters: int, feat_dim: int, nonparametric: bool = False,
                 make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None, seed: int = 0):
        super().__init__()
        if not nonparametric and make_optimizer is None:
            raise ValueError("MDC with a parametric classifier needs make_optimizer")
        self.name = "mdc_nonparametric" if nonparametric else "mdc"
        self.heads = picie_heads(n_clusters, n_views=1)
        self.feat_dim = feat_dim
        self.nonparametric = nonparametric
        self.make_optimizer = make_optimizer
        self.generator = torch.Generator().manual_seed(seed)
        self.classifier: nn.Conv2d | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def start_epoch(self, centroids, counts, weighting, device) -> None:
        super().start_epoch(centroids, counts, weighting, device)
        if not self.nonparametric:
            # A fresh classifier and optimiser every epoch: cluster k of this epoch has nothing
            # to do with cluster k of the last one.
            self.classifier = new_mdc_classifier(self.feat_dim, self.heads[0].n_clusters, self.generator).to(device)
            self.optimizer = self.make_optimizer(self.classifier)

    def loss(self, feats, labels):
        if self.nonparametric:
            logits = centroid_logits(feats[0], self.centroids[0])
        else:
            logits = self.classifier(feats[0])
        loss = F.cross_entropy(logits.float(), labels[0], weight=self.weights[0])
        return loss, {"ce": loss.detach()}

    def zero_grad(self) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        if self.optimizer is None:
            return
        if dist.is_distributed():
            # The classifier is not wrapped in DDP: average its gradients so ranks stay identical.
            for param in self.classifier.parameters():
                if param.grad is not None:
                    param.grad.copy_(dist.all_reduce_sum(param.grad) / dist.world_size())
        self.optimizer.step()


def build_objective(settings: ObjectiveSettings, feat_dim: int,
                    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
                    seed: int = 0) -> Objective:
    """The objective of settings.method (picie, mdc) with K_train = settings.n_clusters; aux_clusters
    > 0 gives PiCIE+H; loss_terms picks PiCIE's within- and/or cross-view terms (component ablations)."""
    if settings.method == "picie":
        return PiCIEObjective(settings.n_clusters, settings.aux_clusters, settings.loss_terms)
    if settings.method == "mdc":
        if settings.aux_clusters:
            raise UserError("--overcluster is PiCIE+H: use it with --method picie")
        return MDCObjective(settings.n_clusters, feat_dim, settings.nonparametric, make_optimizer, seed)
    raise UserError(f"unknown --method {settings.method!r}; choose from {', '.join(METHODS)}")

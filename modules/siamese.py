"""The Siamese pair: one network, shared weights, applied to both views in one call.

Both views go through the same parameters, so whatever the losses teach the network holds for
any view: the invariance (P1 vs P2) and equivariance (G inside vs outside the network) are
properties of that single function. Running both views inside one forward call also lets
DistributedDataParallel see each parameter's gradient as one sum over the two views (two
separate DDP forwards before one backward would mark parameters ready twice).
"""

import torch
import torch.nn.functional as F
from torch import nn

from data.transforms import ViewMaker, ViewParams, make_views
from utils.runtime import Runtime


class SiamesePair(nn.Module):
    """(view1 [B, 3, H, W], view2 [B, 3, H, W]) -> (f(view1), f(view2)), each [B, C, H/s, W/s]
    (s = net.stride: 4 for the ResNet-FPN, the patch size for a ViT).

    The views go through the network separately (not concatenated) so that BatchNorm sees each
    view's batch on its own, as in the original. With view2 None (one-view methods such as MDC)
    it returns (f(view1),).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, view1: torch.Tensor, view2: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if view2 is None:
            return (self.net(view1),)
        return self.net(view1), self.net(view2)


def features_of_views(pair: nn.Module, view_maker: ViewMaker, view1: torch.Tensor, view2: torch.Tensor,
                      params: ViewParams, runtime: Runtime, l2_normalize: bool,
                      n_views: int = 2) -> tuple[torch.Tensor, ...]:
    """z1 = f(view1) and z2 = G(f(view2)), each [B, C, h, w] float32, pixel-aligned, h = w = view_maker.grid
    (res1 / the network's stride). view1 = P1(G(x)) and view2 = P2(resize(x)) with the default
    --photometric_res view (G(P1 x) and resize(P2 x) with base): ViewMaker.views.

    `pair` is a SiamesePair (or DDP around one, when training on several ranks). n_views=1 (MDC)
    forwards view 1 only and returns (z1,). l2_normalize: unit-length features (cosine metric).
    """
    with runtime.autocast():
        feats = list(pair(view1, view2 if n_views > 1 else None))
    feats = [f.float() for f in feats]
    if feats[0].shape[-1] != view_maker.grid:
        # The crop boxes and the pseudo-label arrays are in units of view_maker.grid: a ViewMaker
        # built for another stride would misalign the views' features and their labels.
        raise RuntimeError(f"the network's features are {feats[0].shape[-1]} cells wide but the ViewMaker's grid is "
                           f"{view_maker.grid} (res1 {view_maker.res1}); build it with feature_stride=model.stride")
    if n_views > 1:
        feats[1] = view_maker.geometric_on_features(feats[1], params)
    if l2_normalize:
        feats = [F.normalize(f, dim=1) for f in feats]
    return tuple(feats)


def embed_views(pair: nn.Module, view_maker: ViewMaker, base_images: torch.Tensor, params: ViewParams,
                runtime: Runtime, l2_normalize: bool, n_views: int = 2) -> tuple[torch.Tensor, ...]:
    """The views' features (as features_of_views) straight from base images uint8 [B, 3, res2, res2]."""
    view1, view2 = make_views(view_maker, base_images, params, runtime, runtime.amp_dtype)
    return features_of_views(pair, view_maker, view1, view2, params, runtime, l2_normalize, n_views)

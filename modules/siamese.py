"""The Siamese pair: one network, shared weights, applied to both views in one call.

Both views go through the same parameters, so whatever the losses teach the network holds for
any view: the invariance (P1 vs P2) and equivariance (G inside vs outside the network) are
properties of that single function. Running both views inside one forward call also lets
DistributedDataParallel see each parameter's gradient as one sum over the two views (two
separate DDP forwards before one backward would mark parameters ready twice).
"""
from typing import Optional, Tuple

import torch
from torch import nn


class SiamesePair(nn.Module):
    """(view1 [B, 3, H, W], view2 [B, 3, H, W]) -> (f(view1), f(view2)), each [B, C, H/4, W/4].

    The views go through the network separately (not concatenated) so that BatchNorm sees each
    view's batch on its own, as in the original. With view2 None (one-view methods such as MDC)
    it returns (f(view1),).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, view1: torch.Tensor, view2: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, ...]:
        if view2 is None:
            return (self.net(view1),)
        return self.net(view1), self.net(view2)

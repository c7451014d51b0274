"""modules/fpn.py, the ResNet-FPN: shapes, feature size, the tiny ResNet, the top-down decoder.
Its weights (--pretrain, --pretrain_path): tests/test_networks.py."""
import pytest
import torch

from modules import fpn
from modules.networks import build_model
from utils.errors import UserError


@pytest.mark.parametrize('arch,dim', [('resnet18', 128), ('resnet34', 128), ('resnet50', 256), ('resnet18_tiny', 128)])
def test_output_is_stride_4_with_the_architectures_feature_size(arch, dim):
    model = build_model(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 128))
    assert out.shape == (2, dim, 24, 32) and model.feat_dim == dim


def test_tiny_resnet_is_resnet18s_layout_narrowed():
    """--arch resnet18_tiny (the tiny preset's): ResNet-18's blocks and strides, stages 16-32-32-64 wide,
    under 1/40 of ResNet-18's parameters; random init only (no ImageNet weights exist for it). Its
    backward runs on a channels-last batch of odd size (8-channel stages crashed oneDNN there)."""
    tiny, full = build_model('resnet18_tiny'), build_model('resnet18')
    assert [len(getattr(tiny.backbone, f'layer{i}')) for i in range(1, 5)] == [2, 2, 2, 2]
    assert [getattr(tiny.backbone, f'layer{i}')[-1].conv2.out_channels for i in range(1, 5)] == [16, 32, 32, 64]
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n_params(tiny) < n_params(full) / 40
    with pytest.raises(UserError, match='resnet18_tiny has no ImageNet weights'):
        build_model('resnet18_tiny', pretrain=True)
    images = torch.randn(3, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    tiny.to(memory_format=torch.channels_last)(images).pow(2).mean().backward()
    assert tiny.backbone.conv1.weight.grad is not None


def test_in_dim_overrides_feature_size():
    assert build_model('resnet18', feat_dim=64).feat_dim == 64


def test_fpn_adds_upsampled_coarse_maps_without_nonlinearity():
    """Top-down sum of 1x1 laterals: the decoder is linear in the backbone outputs."""
    decoder = fpn.FPNDecoder((4, 4, 4, 4), 3)
    levels = [torch.randn(1, 4, s, s) for s in (16, 8, 4, 2)]
    doubled = decoder(*[2 * x for x in levels]) - 2 * decoder(*levels)
    bias_part = decoder(*[torch.zeros_like(x) for x in levels])
    torch.testing.assert_close(doubled, -bias_part, atol=1e-5, rtol=1e-5)


def test_fpn_is_the_hand_computed_top_down_sum():
    """decoder(c1..c4) = l1(c1) + up(l2(c2) + up(l3(c3) + up(l4(c4)))): 1x1 laterals, bilinear
    upsampling (align_corners=False) to the finer map's size, written out here step by step."""
    torch.manual_seed(0)
    decoder = fpn.FPNDecoder((4, 5, 6, 7), 3)
    levels = [torch.randn(2, c, s, s + 1) for c, s in ((4, 16), (5, 8), (6, 4), (7, 2))]

    def lateral(conv, x):
        return torch.nn.functional.conv2d(x, conv.weight, conv.bias)

    def up(x, like):
        return torch.nn.functional.interpolate(x, size=like.shape[-2:], mode='bilinear', align_corners=False)

    l1, l2, l3, l4 = (lateral(conv, x) for conv, x in zip(
        (decoder.lateral1, decoder.lateral2, decoder.lateral3, decoder.lateral4), levels, strict=True))
    expected = l1 + up(l2 + up(l3 + up(l4, l3), l2), l1)
    with torch.no_grad():
        torch.testing.assert_close(decoder(*levels), expected, atol=1e-6, rtol=1e-6)

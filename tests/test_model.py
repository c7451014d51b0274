"""ResNet-FPN: shapes, feature size from the model, local weights, offline --pretrain message."""
import pytest
import torch
import torchvision

from modules import fpn, networks
from modules.fpn import PretrainError
from modules.networks import build_model


@pytest.mark.parametrize('arch,dim', [('resnet18', 128), ('resnet34', 128), ('resnet50', 256)])
def test_output_is_stride_4_with_the_architectures_feature_size(arch, dim):
    model = build_model(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 128))
    assert out.shape == (2, dim, 24, 32) and model.feat_dim == dim


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
        (decoder.lateral1, decoder.lateral2, decoder.lateral3, decoder.lateral4), levels))
    expected = l1 + up(l2 + up(l3 + up(l4, l3), l2), l1)
    with torch.no_grad():
        torch.testing.assert_close(decoder(*levels), expected, atol=1e-6, rtol=1e-6)


def test_pretrain_path_loads_torchvision_weights(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / 'r18.pth'
    torch.save(reference.state_dict(), path)
    model = build_model('resnet18', pretrain_path=str(path))
    torch.testing.assert_close(model.backbone.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(model.backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_pretrain_path_of_wrong_architecture(tmp_path):
    path = tmp_path / 'r50.pth'
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(PretrainError, match='not a torchvision resnet18'):
        build_model('resnet18', pretrain_path=str(path))


def test_missing_pretrain_path():
    with pytest.raises(PretrainError, match='does not exist'):
        build_model('resnet18', pretrain_path='/no/such/file.pth')


def test_offline_pretrain_says_which_file_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))

    def no_network(*args, **kwargs):
        raise OSError('network unreachable')

    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', no_network)
    with pytest.raises(PretrainError) as info:
        build_model('resnet18', pretrain=True)
    message = str(info.value)
    assert 'https://download.pytorch.org/models/resnet18' in message
    assert str(tmp_path / 'hub' / 'checkpoints') in message and '--pretrain_path' in message


def test_pretrain_uses_a_cached_weights_file(tmp_path, monkeypatch):
    """With the file already in torch's cache (what the message asks for), --pretrain works offline."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    url, cache = networks.imagenet_weights_file('resnet18')
    reference = torchvision.models.resnet18(weights=None)
    (tmp_path / 'hub' / 'checkpoints').mkdir(parents=True)
    torch.save(reference.state_dict(), cache)
    model = build_model('resnet18', pretrain=True)
    assert isinstance(model.backbone.fc, torch.nn.Identity)
    torch.testing.assert_close(model.backbone.conv1.weight, reference.conv1.weight)

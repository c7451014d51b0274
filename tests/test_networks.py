"""modules/networks.py, the ResNet-FPN's weights: a local file, the wrong depth, a missing file, the
offline --pretrain message and torch's cache."""
import os

import pytest
import torch
import torchvision

from modules import networks
from modules.networks import build_model
from utils.errors import PretrainError


@pytest.fixture(scope='module')
def resnet18_file(tmp_path_factory):
    """(torchvision ResNet-18 with random weights, its state dict's file): 47 MB, written once."""
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path_factory.mktemp('weights') / 'r18.pth'
    torch.save(reference.state_dict(), path)
    return reference, path


def test_pretrain_path_loads_torchvision_weights(resnet18_file):
    reference, path = resnet18_file
    model = build_model('resnet18', pretrain_path=str(path))
    torch.testing.assert_close(model.backbone.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(model.backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_pretrain_path_of_wrong_architecture(tmp_path):
    path = tmp_path / 'r50.pth'
    # The stem and first stage of a ResNet-50: its bottleneck blocks already differ from a ResNet-18's
    # (the other stages would add 100 MB of writing and nothing to the check).
    stages = ('layer2.', 'layer3.', 'layer4.', 'fc.')
    torch.save({k: v for k, v in torchvision.models.resnet50(weights=None).state_dict().items()
                if not k.startswith(stages)}, path)
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


def test_pretrain_uses_a_cached_weights_file(tmp_path, monkeypatch, resnet18_file):
    """With the file already in torch's cache (what the message asks for), --pretrain works offline."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    url, cache = networks.imagenet_weights_file('resnet18')
    reference, path = resnet18_file
    (tmp_path / 'hub' / 'checkpoints').mkdir(parents=True)
    os.symlink(path, cache)  # the file in the cache (a link: the same 47 MB need not be written twice)
    model = build_model('resnet18', pretrain=True)
    assert isinstance(model.backbone.fc, torch.nn.Identity)
    torch.testing.assert_close(model.backbone.conv1.weight, reference.conv1.weight)

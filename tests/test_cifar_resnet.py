"""``CifarResNet``: He et al. 2016's CIFAR ResNets (depth 6n + 2): parameter counts as the
paper's Table 6, stage shapes, option A/B shortcuts, depth validation, and a classifier
built from the registry under mmpretrain's scope whose blocks sslreg's taps find."""
import pytest
import torch
from mmengine.registry import MODELS, init_default_scope

from sslreg.models import CifarResNet
from sslreg.models.cifar_resnet import CifarBasicBlock
from sslreg.regularizers import LayerRecorder


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('depth, paper_millions', [(20, 0.27), (32, 0.46), (44, 0.66),
                                                   (56, 0.85), (110, 1.7)])
def test_parameter_counts_are_the_papers(depth, paper_millions):
    """Backbone + the 10-way classifier (64 * 10 + 10), option A: He et al.'s Table 6."""
    total = n_params(CifarResNet(depth=depth)) + 64 * 10 + 10
    digits = 1 if depth == 110 else 2
    assert round(total / 1e6, digits) == paper_millions


def test_resnet32_exact_counts_and_option_b():
    a, b = CifarResNet(depth=32), CifarResNet(depth=32, shortcut='B')
    assert n_params(a) + 650 == 464154  # the widely reproduced ResNet-32 count
    # option B adds the two strided 1x1 projections + their BN (16->32, 32->64)
    assert n_params(b) - n_params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert sum(isinstance(m, CifarBasicBlock) for m in a.modules()) == 15


def test_stage_outputs_and_option_a_shortcut():
    torch.manual_seed(0)
    model = CifarResNet(depth=20, out_indices=(0, 1, 2)).eval()
    outs = model(torch.randn(2, 3, 32, 32))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    assert model.out_channels == (16, 32, 64)
    last = CifarResNet(depth=20)(torch.randn(1, 3, 40, 40))
    assert len(last) == 1 and tuple(last[0].shape) == (1, 64, 10, 10)
    # option A: subsample by the stride, new channels are zeros, no parameters
    block = model.layer2[0]
    assert block.downsample is None
    x = torch.randn(2, 16, 32, 32)
    short = block.identity(x)
    assert torch.equal(short[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(short[:, 16:]) == 0


def test_depth_and_option_validation():
    for bad in (18, 33, 2, 30, '32'):
        with pytest.raises(ValueError, match=r'6n \+ 2'):
            CifarResNet(depth=bad)
    with pytest.raises(ValueError, match='shortcut'):
        CifarResNet(shortcut='C')


def test_classifier_from_the_registry_and_taps():
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='CifarResNet', depth=32),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=64,
                  loss=dict(type='CrossEntropyLoss'))))
    model.init_weights()
    assert n_params(model) == 464154
    assert tuple(model(torch.randn(2, 3, 32, 32), mode='tensor').shape) == (2, 10)
    recorder = LayerRecorder('backbone.layer*.*')
    names = recorder.attach(model)
    assert names == [f'backbone.layer{i}.{j}' for i in (1, 2, 3) for j in range(5)]
    recorder.detach()

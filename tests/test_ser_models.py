"""SER's models: LateClsViT, where the equivariance gradient goes, lambda = 0 being the
base algorithm exactly, and the equivariance score / metric."""
import copy
import random

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.registry import MODELS, init_default_scope
from mmpretrain.structures import DataSample

from sslreg import geometry as G
from sslreg.evaluation import EquivarianceMetric, equivariance_scores, token_map
from sslreg.evaluation.equivariance import DEFAULT_TRANSFORMS
from sslreg.models.late_cls_vit import LateClsViT, to_vit_state_dict

pytestmark = pytest.mark.timeout(300)

K = 2  # cls_insert_layer of the tiny ViTs
TINY = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('mmpretrain')
    MessageHub.get_current_instance().update_info('max_iters', 10)


def backbone_cfg(**kw):
    return dict(dict(type='LateClsViT', arch=TINY, img_size=32, patch_size=8,
                     cls_insert_layer=K), **kw)


def neck_cfg(in_channels=32, out=16, **kw):
    return dict(dict(type='NonLinearNeck', in_channels=in_channels, hid_channels=48,
                     out_channels=out, num_layers=2, with_bias=False, with_last_bn=True,
                     with_last_bn_affine=False, with_last_bias=False, with_avg_pool=False,
                     norm_cfg=dict(type='BN1d')), **kw)


def algo_cfg(name, **ser):
    ser = dict(dict(equiv_ratio=0.5), **ser)
    if name == 'SERMoCoV3':
        return dict(type='SERMoCoV3', backbone=backbone_cfg(), neck=neck_cfg(),
                    head=dict(type='MoCoV3Head', predictor=neck_cfg(16),
                              loss=dict(type='CrossEntropyLoss', loss_weight=0.4),
                              temperature=0.2), ser=ser)
    if name == 'SERBarlowTwins':
        return dict(type='SERBarlowTwins', backbone=backbone_cfg(),
                    neck=neck_cfg(out=24, with_last_bn=False),
                    head=dict(type='LatentCrossCorrelationHead', in_channels=24,
                              loss=dict(type='CrossCorrelationLoss')), ser=ser)
    return dict(type='SERDINO', backbone=backbone_cfg(),
                head=dict(out_channels=64, hidden_channels=32, bottleneck_channels=16), ser=ser)


def batch(n=8, size=32, seed=0):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(n, 3, size, size, generator=g) for _ in range(3)]
    samples = []
    for _ in range(n):
        ds = DataSample()
        ds.set_metainfo(dict(ser_g1=G.sample_element(rng=rng).to_tuple(),
                             ser_g2=G.sample_element(rng=rng).to_tuple()))
        samples.append(ds)
    return views, samples


# --------------------------------------------------------------------------- LateClsViT


def test_late_cls_vit_blocks_up_to_k_never_see_the_cls_token():
    torch.manual_seed(0)
    vit = LateClsViT(**{k: v for k, v in backbone_cfg().items() if k != 'type'})
    vit.eval()
    x = torch.randn(2, 3, 32, 32)
    outs, tokens = vit.forward_with_tokens(x)
    assert outs[0].shape == (2, 32) and tokens.shape == (2, 32, 4, 4)
    vit.cls_token.data.normal_()
    outs2, tokens2 = vit.forward_with_tokens(x)
    assert torch.equal(tokens, tokens2)  # token map after block k: no CLS influence
    assert not torch.allclose(outs[0], outs2[0])  # the CLS output does depend on it
    assert vit.pos_embed.shape == (1, 16, 32)  # patches only
    # non-square and rescaled inputs: positions are resized per input
    _, t = vit.forward_with_tokens(torch.randn(1, 3, 40, 24))
    assert t.shape == (1, 32, 5, 3)


def test_late_cls_vit_loads_standard_vit_weights_and_back():
    from mmpretrain.models import VisionTransformer
    std = VisionTransformer(arch=TINY, img_size=32, patch_size=8)
    late = LateClsViT(arch=TINY, img_size=32, patch_size=8, cls_insert_layer=K)
    missing, unexpected = late.load_state_dict(std.state_dict(), strict=False)
    assert set(missing) == {'ln_equiv.weight', 'ln_equiv.bias'} and not unexpected
    torch.testing.assert_close(late.pos_embed, std.pos_embed[:, 1:])
    torch.testing.assert_close(late.layers[3].attn.qkv.weight, std.layers[3].attn.qkv.weight)
    std.load_state_dict(to_vit_state_dict(late.state_dict()))  # strict: shapes match
    # a standard checkpoint of another resolution is resized
    late64 = LateClsViT(arch=TINY, img_size=64, patch_size=8, cls_insert_layer=K)
    late64.load_state_dict(std.state_dict(), strict=False)
    assert late64.pos_embed.shape == (1, 64, 32)


def test_late_cls_vit_as_a_frozen_detection_encoder():
    from sslreg.models.frozen_backbone import FrozenBackbone
    enc = FrozenBackbone(backbone_cfg(out_type='featmap'))
    enc.train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    (feat,) = enc(torch.randn(1, 3, 64, 48))
    assert feat.shape == (1, 32, 8, 6)
    with pytest.raises(ValueError):
        LateClsViT(arch=TINY, img_size=32, patch_size=8, cls_insert_layer=3, out_indices=[0])


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize('name', ['SERMoCoV3', 'SERBarlowTwins', 'SERDINO'])
def test_equivariance_gradient_reaches_blocks_1_to_k_and_nothing_after(name):
    torch.manual_seed(0)
    model = MODELS.build(algo_cfg(name))
    model.train()
    views, samples = batch()
    losses = model.loss(views, samples)
    assert set(losses) == {'loss_inv', 'loss_equiv', 'equiv_nce'}
    losses['loss_equiv'].backward()  # through the equivariance loss alone

    def grad_norm(prefix):
        gs = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert gs, prefix
        return sum(float(g.abs().sum()) for g in gs if g is not None)

    for i in range(K):
        assert grad_norm(f'backbone.layers.{i}.') > 0, f'block {i + 1} got no gradient'
    for prefix in ('backbone.patch_embed.', 'backbone.pos_embed', 'backbone.ln_equiv.',
                   'ser_projector.'):
        assert grad_norm(prefix) > 0, prefix
    for i in range(K, TINY['num_layers']):
        assert grad_norm(f'backbone.layers.{i}.') == 0, f'block {i + 1} got a gradient'
    for prefix in ('backbone.ln1.', 'backbone.cls_token'):
        assert grad_norm(prefix) == 0, prefix


# --------------------------------------------------------------------------- lambda = 0


def test_ser_mocov3_without_ser_is_mmpretrains_mocov3_exactly():
    torch.manual_seed(0)
    cfg = algo_cfg('SERMoCoV3', lambda_equiv=0.0, equiv_ratio=0.0)
    ser = MODELS.build(cfg)
    base_cfg = copy.deepcopy(cfg)
    base_cfg.pop('ser')
    base_cfg['type'] = 'mmpretrain.MoCoV3'
    base = MODELS.build(base_cfg)
    missing, unexpected = base.load_state_dict(ser.state_dict(), strict=False)
    assert not missing and all(k.startswith('ser_projector.') for k in unexpected)
    views, _ = batch()
    plain = [DataSample() for _ in range(8)]  # a plain MultiView batch: no group elements
    got = ser.loss(views[:2], plain)
    want = base.loss(views[:2], plain)
    assert set(got) == {'loss_inv'}
    assert torch.equal(got['loss_inv'], want['loss'])
    assert torch.equal(ser.parse_losses(got)[0], base.parse_losses(want)[0])


def test_ser_barlowtwins_without_ser_is_mmpretrains_barlowtwins_exactly():
    torch.manual_seed(0)
    cfg = algo_cfg('SERBarlowTwins', lambda_equiv=0.0, equiv_ratio=0.0)
    ser = MODELS.build(cfg)
    base_cfg = dict(copy.deepcopy(cfg), type='mmpretrain.BarlowTwins')
    base_cfg.pop('ser')
    base = MODELS.build(base_cfg)
    base.load_state_dict(ser.state_dict(), strict=False)
    views, samples = batch()
    assert torch.equal(ser.loss(views, samples)['loss_inv'], base.loss(views, samples)['loss'])


def test_lambda_zero_skips_the_equivariance_loss_but_keeps_the_split():
    torch.manual_seed(0)
    model = MODELS.build(algo_cfg('SERMoCoV3', lambda_equiv=0.0, equiv_ratio=0.5))
    views, samples = batch()
    assert set(model.loss(views, samples)) == {'loss_inv'}
    assert model.ser_split(8) == 4 and model.ser_split(256) == 128


def test_split_sizes_and_errors():
    model = MODELS.build(algo_cfg('SERMoCoV3', equiv_ratio=0.01))
    assert model.ser_split(256) == 3  # round(2.56): the released constant schedule
    assert model.ser_split(32) == 2   # at least min_equiv_samples, for negatives
    views, _ = batch()
    with pytest.raises(KeyError, match='GeometricGroupViews'):
        model.loss(views, [DataSample() for _ in range(8)])
    with pytest.raises(TypeError, match='unknown SER options'):
        MODELS.build(algo_cfg('SERMoCoV3', lamda=1.0))


# --------------------------------------------------------------------------- scores


def _exactly_equivariant_vit():
    """Zero positions and a D4-symmetric patch kernel: every block is permutation
    equivariant on tokens and patches look the same in any orientation, so rot/flip
    act exactly on every token map (before and after the CLS token joins)."""
    torch.manual_seed(0)
    vit = LateClsViT(arch=TINY, img_size=32, patch_size=8, cls_insert_layer=K)
    vit.pos_embed.data.zero_()
    w = vit.patch_embed.projection.weight.data
    w.copy_(sum(G.act(w, g) for g in G.ELEMENTS_D4) / 8)
    vit.eval()
    return vit


def test_equivariance_score_is_one_for_an_exactly_equivariant_network():
    vit = _exactly_equivariant_vit()
    x = torch.randn(4, 3, 32, 32)
    s = equivariance_scores(vit, x, DEFAULT_TRANSFORMS, locations=(1, K, TINY['num_layers'],
                                                                   'final', 'layer_k'))
    for loc in ('layer_1', f'layer_{K}', f"layer_{TINY['num_layers']}", 'final', 'layer_k'):
        assert s[f'{loc}/rot90'] == pytest.approx(1.0, abs=1e-5)
        assert s[f'{loc}/flip'] == pytest.approx(1.0, abs=1e-5)
        assert s[f'{loc}/scale'] < 1.0
    # a normal ViT (random positions) is far from it
    torch.manual_seed(1)
    plain = LateClsViT(arch=TINY, img_size=32, patch_size=8, cls_insert_layer=K)
    plain.init_weights()
    plain_s = equivariance_scores(plain, x, DEFAULT_TRANSFORMS)
    assert plain_s['final/rot90'] < 0.9 and plain_s['layer_k/rot90'] < 0.9
    assert token_map(vit, x, K).shape == (4, 32, 4, 4)


def test_predict_mode_feeds_the_equivariance_metric():
    torch.manual_seed(0)
    model = MODELS.build(algo_cfg('SERMoCoV3'))
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    out = model(x, [DataSample() for _ in range(3)], mode='predict')
    metric = EquivarianceMetric()
    metric.process(None, [o.to_dict() for o in out])
    res = metric.compute_metrics(metric.results)
    want = equivariance_scores(model.backbone, x, model.eval_transforms())
    assert set(want) == {f'{loc}/{t}' for loc in ('final', 'layer_k')
                         for t in ('rotation', 'flip', 'scale', 'group')}
    for k, v in want.items():
        assert res[k] == pytest.approx(v, abs=1e-5)
    for loc in ('final', 'layer_k'):
        mine = [v for k, v in want.items() if k.startswith(loc + '/')]
        assert res[f'{loc}/mean'] == pytest.approx(sum(mine) / 4, abs=1e-5)

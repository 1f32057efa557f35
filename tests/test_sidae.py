"""SidAE: w = 0 is mmpretrain's SimSiam exactly, w = 1 the pure reconstruction loss, the
decoder's geometry, the view wrapper, and a few training iterations on the digits."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS, TRANSFORMS, init_default_scope

from conftest import run_tool
from sslreg.losses.sidae import dae_loss, negative_cosine, simsiam_loss, sidae_terms
from sslreg.models.sidae import SidAEDecoder

init_default_scope('mmpretrain')


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


def simsiam_parts():
    return dict(
        backbone=dict(type='ResNet', depth=18, base_channels=8, stem_channels=8,
                      norm_cfg=dict(type='BN'), zero_init_residual=True),
        neck=dict(type='NonLinearNeck', in_channels=64, hid_channels=32, out_channels=32,
                  num_layers=3, with_last_bn_affine=False, with_avg_pool=True,
                  norm_cfg=dict(type='BN1d')),
        head=dict(type='LatentPredictHead', loss=dict(type='CosineSimilarityLoss'),
                  predictor=dict(type='NonLinearNeck', in_channels=32, hid_channels=16,
                                 out_channels=32, with_avg_pool=False, with_last_bn=False,
                                 with_last_bias=True, norm_cfg=dict(type='BN1d'))))


def build(kind, w=0.5, seed=0):
    torch.manual_seed(seed)
    cfg = dict(type=kind, **simsiam_parts())
    if kind == 'SidAE':
        cfg.update(decoder=dict(in_channels=32, channels=(32, 16, 16, 8, 8)), w=w)
    return MODELS.build(cfg).train()


def views(seed=1, n=4):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, 32, 32, generator=gen) for _ in range(3)]


def test_w0_is_mmpretrain_simsiam_exactly():
    simsiam, sidae = build('SimSiam'), build('SidAE', w=0.0)
    missing, unexpected = sidae.load_state_dict(simsiam.state_dict(), strict=False)
    assert all(k.startswith('decoder.') for k in missing) and not unexpected
    v1, v2, clean = views()
    theirs = simsiam.loss([v1, v2], None)['loss']
    ours = sidae.loss([v1, v2, clean], None)
    assert set(ours) == {'loss_si'}
    assert torch.equal(ours['loss_si'], theirs)
    # and the same gradients: the decoder takes no part
    ours['loss_si'].backward()
    theirs.backward()
    for (name, p), q in zip(sidae.named_parameters(), list(simsiam.parameters())):
        if name.startswith('decoder.'):
            assert p.grad is None
    grads = {n: p.grad for n, p in simsiam.named_parameters()}
    for n, p in sidae.named_parameters():
        if n in grads:
            assert (p.grad is None and grads[n] is None) or torch.equal(p.grad, grads[n]), n


def test_w1_is_the_pure_reconstruction_loss_of_the_clean_image():
    model = build('SidAE', w=1.0)
    v1, v2, clean = views()
    out = model.loss([v1, v2, clean], None)
    assert set(out) == {'loss_dae'}
    torch.manual_seed(0)
    z1 = model.neck(model.backbone(v1))[0]
    z2 = model.neck(model.backbone(v2))[0]
    by_hand = 0.5 * F.mse_loss(model.decoder(z1), clean) + 0.5 * F.mse_loss(model.decoder(z2),
                                                                            clean)
    assert torch.allclose(out['loss_dae'], by_hand, rtol=1e-6, atol=1e-7)
    out['loss_dae'].backward()
    assert all(p.grad is None for p in model.head.parameters())  # no Siamese term
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_mixed_loss_is_the_weighted_sum():
    model = build('SidAE', w=0.3)
    v1, v2, clean = views()
    out = model.loss([v1, v2, clean], None)
    z1 = model.neck(model.backbone(v1))[0]
    z2 = model.neck(model.backbone(v2))[0]
    p1, p2 = model.head.predictor([z1])[0], model.head.predictor([z2])[0]
    assert torch.allclose(out['loss_si'], 0.7 * simsiam_loss(p1, p2, z1, z2), atol=1e-6)
    assert torch.allclose(out['loss_dae'], 0.3 * dae_loss(clean, model.decoder(z1),
                                                          model.decoder(z2)), rtol=1e-5)


def test_negative_cosine_stops_the_gradient_of_the_target():
    p = torch.randn(5, 8, requires_grad=True)
    z = torch.randn(5, 8, requires_grad=True)
    loss = negative_cosine(p, z)
    assert torch.allclose(loss, -F.cosine_similarity(p, z, dim=1).mean())
    loss.backward()
    assert z.grad is None and p.grad is not None
    with pytest.raises(ValueError):
        sidae_terms(None, None, 1.5)


@pytest.mark.parametrize('out_size', [32, 64])
def test_decoder_reconstructs_the_input_shape(out_size):
    dec = SidAEDecoder(in_channels=20, channels=(16, 8, 8, 4, 4), out_size=out_size)
    convs = [m for m in dec.deconv if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == 5 and all(
        c.kernel_size == (3, 3) and c.stride == (2, 2) and c.padding == (1, 1)
        and c.output_padding == (1, 1) for c in convs)
    assert dec(torch.randn(2, 20)).shape == (2, 3, out_size, out_size)
    model = build('SidAE')
    x = torch.randn(2, 3, 32, 32)
    assert model.reconstruct(x).shape == x.shape


def test_sidae_views_gives_two_views_and_the_clean_image():
    views_t = TRANSFORMS.build(dict(type='SidAEViews', size=32, gaussian_blur=True))
    names = [type(t).__name__ for t in views_t.pipeline.transforms]
    assert names == ['RandomApply', 'RandomResizedCrop', 'RandomGrayscale', 'GaussianBlur',
                     'RandomFlip']
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = views_t(dict(img=img))
    assert len(out['img']) == 3
    assert np.array_equal(out['img'][2], img)
    assert all(v.shape == (32, 32, 3) for v in out['img'][:2])
    assert not np.array_equal(out['img'][0], out['img'][1])
    # MNIST-like: a gray 28x28 image becomes 3 channels at 32x32, the clean one resized
    gray = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    out = TRANSFORMS.build(dict(type='SidAEViews', size=32))(dict(img=gray))
    assert [v.shape for v in out['img']] == [(32, 32, 3)] * 3
    names = [type(t).__name__ for t in TRANSFORMS.build(
        dict(type='SidAEViews')).pipeline.transforms]
    assert 'GaussianBlur' not in names


def test_a_few_training_iterations_on_the_digits(small_data, tmp_path):
    log = run_tool('tools/train.py', 'configs/sidae/sidae_r18_digits.py', '--work-dir', tmp_path,
                   '--cfg-options', 'train_cfg.max_epochs=1',
                   'train_dataloader.dataset.indices=24', 'train_dataloader.batch_size=8',
                   'default_hooks.logger.interval=1', 'model.backbone.base_channels=16',
                   'model.backbone.stem_channels=16', 'model.neck.in_channels=128',
                   env={'OMP_NUM_THREADS': '1'})
    lines = re.findall(r'Epoch\(train\) \[1\]\[(\d)/3\].*loss: (\S+)\s+loss_si: (\S+)\s+'
                       r'loss_dae: (\S+)', log)
    assert [int(line[0]) for line in lines] == [1, 2, 3], log[-3000:]
    assert all(np.isfinite(float(v)) for line in lines for v in line[1:])
    assert (tmp_path / 'epoch_1.pth').exists()

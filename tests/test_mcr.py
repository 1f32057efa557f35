"""MCR / CompMod: the MEC series, the bi-level meta-gradient against finite differences,
exact reproduction of the base algorithm at lambda1 = lambda2 = 0, no side effects of
the virtual step, and the MMEngine plumbing (two optimizers, schedulers, checkpoint,
resume) through tools/train.py."""
import copy
import re
import sys

import pytest
import torch
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from conftest import ROOT
from sslreg.losses.mec import (comp_loss, mcr_loss, mec_hparams, mec_lambda_warmup,
                               mec_trace)
from sslreg.models.mcr import MCR

init_default_scope('mmpretrain')


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


# --------------------------------------------------------------------------- the series


def _direct_series(A, B, lam, mu, order):
    A = A / A.norm(dim=1, keepdim=True)
    B = B / B.norm(dim=1, keepdim=True)
    X = lam * A @ B.T
    return -mu * sum((-1) ** (k + 1) / k * torch.trace(torch.linalg.matrix_power(X, k))
                     for k in range(1, order + 1))


@pytest.mark.parametrize('m,d', [(7, 5), (5, 7), (6, 6)])
@pytest.mark.parametrize('order', [1, 2, 3, 4, 5, 8])
def test_mec_trace_equals_the_series_in_float64(m, d, order):
    gen = torch.Generator().manual_seed(m * 10 + d + order)
    A = torch.randn(m, d, dtype=torch.float64, generator=gen)
    B = torch.randn(m, d, dtype=torch.float64, generator=gen)
    lam, mu = 0.37, 4.5
    assert torch.allclose(mec_trace(A, B, lam, mu, order), _direct_series(A, B, lam, mu, order),
                          rtol=1e-12, atol=1e-12)
    assert torch.allclose(comp_loss(A, lam, mu, order), _direct_series(A, A, lam, mu, order),
                          rtol=1e-12, atol=1e-12)
    assert torch.allclose(mcr_loss(A, [B, A], lam, mu, order),
                          _direct_series(A, B, lam, mu, order)
                          + _direct_series(A, A, lam, mu, order), rtol=1e-12, atol=1e-12)


def test_mec_trace_of_one_embedding_is_minus_mu_logdet_when_the_series_converges():
    Z = torch.randn(9, 4, dtype=torch.float64)
    Zn = Z / Z.norm(dim=1, keepdim=True)
    lam, mu = mec_hparams(m=9, d=4, eps_sq=4.0)  # lam * ||Z||^2 < 1 here
    assert torch.linalg.matrix_norm(lam * Zn @ Zn.T, ord=2) < 1
    logdet = torch.logdet(torch.eye(9, dtype=torch.float64) + lam * Zn @ Zn.T)
    assert torch.allclose(mec_trace(Z, Z, lam, mu, order=40), -mu * logdet, rtol=1e-10)


def test_mec_hparams_and_warmup_follow_the_mec_code():
    lam, mu = mec_hparams(m=256, d=128)  # eps^2 = 64
    assert lam == pytest.approx(128 / (256 * 64)) and mu == (256 + 128) / 2
    assert mec_lambda_warmup(lam, 0) == pytest.approx(lam / 8)
    assert 1 / mec_lambda_warmup(lam, 0.5) == pytest.approx(0.5 * (8 / lam + 1 / lam))
    assert mec_lambda_warmup(lam, 1) == pytest.approx(lam)
    assert mec_lambda_warmup(lam, 3) == pytest.approx(lam)


# --------------------------------------------------------------------------- toy algorithm


class ToyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3 * 4 * 4, 10), nn.Linear(10, 6)

    def forward(self, x):
        return (self.fc2(torch.tanh(self.fc1(x.flatten(1)))),)


class ToyNeck(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return (self.fc(torch.tanh(x[-1])),)


def toy_mcr(lambda1, lambda2, meta_grad='second_order', fusion='concat', seed=0, **kwargs):
    from mmpretrain.models import SimCLR
    torch.manual_seed(seed)
    simclr = SimCLR(backbone=ToyBackbone(), neck=ToyNeck(),
                    head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                              temperature=0.5))
    model = MCR(simclr, comp_mod=dict(in_channels=6, out_channels=5, fusion=fusion),
                lambda1=lambda1, lambda2=lambda2, meta_grad=meta_grad, eps_sq=1.0,
                lam_warmup_epochs=0, **kwargs)
    return model.double()


def toy_batch(seed=1, n=6):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, 4, 4, dtype=torch.float64, generator=gen) for _ in range(2)]


def meta_objective(model, shards, lr, lambda1, lambda2):
    """The meta objective as a function of xi, written out independently of
    MCR.bilevel_step: with one shard (one process), L_ssl(theta - lr * grad(L_ssl +
    lambda1 L_mcr)) + lambda2 L_comp; with several (ranks), the mean over shards of each
    loss, the virtual step taken with the mean of the shards' gradients."""
    alg = model.algorithm
    names = [n for n, _ in alg.named_parameters()]
    theta = [p for _, p in alg.named_parameters()]
    grads, comps = [], []
    for inputs in shards:
        x = torch.stack(inputs, 1).reshape(-1, *inputs[0].shape[1:])  # SimCLR interleaves
        h = alg.backbone(x)[-1]
        z = alg.neck((h,))[0]
        h1, h2, z1, z2 = h[0::2], h[1::2], z[0::2], z[1::2]
        lam, mu = mec_hparams(h1.shape[0], z1.shape[1], eps_sq=1.0)
        if model.mec_scale == 'mec_training':
            mu = 1 / (h1.shape[0] * lam)
        z_hat = model.comp_mod(h1, h2, z1, z2)
        l_ssl = alg(inputs, None, mode='loss')['loss']
        grads.append(torch.autograd.grad(l_ssl + lambda1 * mcr_loss(z_hat, [z1, z2], lam, mu),
                                         theta))
        comps.append(comp_loss(model.comp_mod(h1, h2, z1, z2), lam, mu))
    g = [sum(gs) / len(shards) for gs in zip(*grads)]
    virtual = {n: p - lr * gi for n, p, gi in zip(names, theta, g)}
    l_virtual = sum(torch.func.functional_call(alg, virtual, (inputs, None),
                                               dict(mode='loss'))['loss'] for inputs in shards)
    return float((l_virtual / len(shards) + lambda2 * sum(comps) / len(shards)).detach())


def directional_fd(model, shards, lr, lambda1, lambda2, direction, eps=1e-5):
    """Central difference of :func:`meta_objective` along ``direction`` in xi."""
    xi = model.meta_parameters()
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(xi, direction):
                p.add_(sign * eps * d)
        values.append(meta_objective(model, shards, lr, lambda1, lambda2))
        with torch.no_grad():
            for p, d in zip(xi, direction):
                p.sub_(sign * eps * d)
    return (values[0] - values[1]) / (2 * eps)


def random_direction(params, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in params]


@pytest.mark.parametrize('lambda2,mec_scale', [(0.0, 'mec_training'), (0.3, 'mec_training'),
                                              (0.3, 'coding_length')])
def test_meta_gradient_equals_finite_difference_of_the_meta_objective(lambda2, mec_scale):
    lambda1, lr = 0.7, 0.5
    model = toy_mcr(lambda1, lambda2, mec_scale=mec_scale)
    inputs = toy_batch()
    step = model.bilevel_step(inputs, None, lrs=lr)
    direction = random_direction(model.meta_parameters())
    analytic = sum((g * d).sum() for g, d in zip(step.meta_grads, direction))
    numeric = directional_fd(model, [inputs], lr, lambda1, lambda2, direction)
    assert abs(numeric) > 1e-4  # the second-order term is really there
    assert float(analytic) == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_mec_scale_of_the_mcr_losses():
    z_hat = torch.zeros(32, 128)
    lam, mu = toy_mcr(1, 1).mec_lambda_mu(z_hat)  # default: the MEC authors' training loss
    assert lam == pytest.approx(128 / (32 * 1.0)) and mu == pytest.approx(1 / (32 * lam))
    lam, mu = toy_mcr(1, 1, mec_scale='coding_length').mec_lambda_mu(z_hat)
    assert mu == (32 + 128) / 2
    # the first-order term of the training-scale loss is minus the mean cosine
    a, b = torch.randn(32, 128, dtype=torch.float64), torch.randn(32, 128, dtype=torch.float64)
    lam = 1e-6
    cos = torch.nn.functional.cosine_similarity(a, b).mean()
    assert float(mec_trace(a, b, lam, 1 / (32 * lam), order=1)) == pytest.approx(-float(cos))


def test_finite_difference_and_first_order_options():
    inputs = toy_batch()
    exact = toy_mcr(0.7, 0.3).bilevel_step(inputs, None, lrs=0.5).meta_grads
    approx = toy_mcr(0.7, 0.3, 'finite_difference').bilevel_step(inputs, None, lrs=0.5)
    for a, b in zip(approx.meta_grads, exact):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-8)
    # first order: xi learns from L_comp alone, no virtual step
    first = toy_mcr(0.7, 0.3, 'first_order').bilevel_step(inputs, None, lrs=0.5)
    only_comp = toy_mcr(0.0, 0.3).bilevel_step(inputs, None, lrs=0.5)
    assert 'virtual_ssl' not in first.log_vars
    for a, b in zip(first.meta_grads, only_comp.meta_grads):
        assert torch.equal(a, b)
    # the base gradient is the same in all three modes
    for a, b in zip(approx.base_grads, first.base_grads):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize('fusion', ['mixup', 'embedding'])
def test_other_fusions_train_their_meta_parameters(fusion):
    model = toy_mcr(0.7, 0.3, fusion=fusion)
    names = [n for n, _ in model.comp_mod.named_parameters()]
    assert all(n.startswith('g_zeta' if fusion == 'embedding' else 'g_xi') for n in names)
    step = model.bilevel_step(toy_batch(), None, lrs=0.5)
    assert all(g is not None and g.abs().sum() > 0 for g in step.meta_grads)


def test_meta_interval_updates_xi_every_kth_step_only():
    # a fresh (current) MessageHub: an 'iter' left by earlier tests must not drive the count
    from mmengine.logging import MessageHub
    MessageHub.get_instance('test_meta_interval_updates_xi_every_kth_step_only')
    model = toy_mcr(0.7, 0.3, meta_interval=2).float()
    optim = build_optim_wrapper(model, dict(
        constructor='MCROptimWrapperConstructor', base=dict(optimizer=dict(type='SGD', lr=0.1)),
        meta=dict(optimizer=dict(type='SGD', lr=0.1))))
    data = dict(inputs=[x.float() for x in toy_batch()], data_samples=None)
    changed = []
    for _ in range(3):
        before = [p.detach().clone() for p in model.meta_parameters()]
        log = model.train_step(dict(data), optim)
        changed.append(any(not torch.equal(a, p) for a, p in zip(before,
                                                                 model.meta_parameters())))
        assert ('virtual_ssl' in log) == changed[-1]
    assert changed == [True, False, True]


def test_views_in_one_call_overrides_the_algorithm_table():
    """Whether the algorithm runs backbone and neck once on both (interleaved) views is
    looked up by class name in INTERLEAVED_ALGORITHMS; views_in_one_call overrides the
    table either way, and a wrong setting fails with a message naming the option."""
    from mmpretrain.models import SimCLR
    from sslreg.models.mcr import INTERLEAVED_ALGORITHMS

    class RenamedSimCLR(SimCLR):  # interleaves as SimCLR does, but is not in the table
        pass

    def around(algorithm_cls, **kwargs):
        torch.manual_seed(0)
        algorithm = algorithm_cls(
            backbone=ToyBackbone(), neck=ToyNeck(),
            head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                      temperature=0.5))
        return MCR(algorithm, comp_mod=dict(in_channels=6, out_channels=5), lambda1=0.7,
                   lambda2=0.3, eps_sq=1.0, lam_warmup_epochs=0, **kwargs).double()

    inputs = toy_batch()
    assert INTERLEAVED_ALGORITHMS == ('SimCLR', )
    assert around(SimCLR).views_in_one_call and not around(RenamedSimCLR).views_in_one_call
    with pytest.raises(RuntimeError, match=r'saw 1 backbone and 1 neck calls.*'
                                           r'views_in_one_call=True'):
        around(RenamedSimCLR).bilevel_step(inputs, None, lrs=0.5)
    with pytest.raises(RuntimeError, match=r'saw 1 backbone and 1 neck calls.*'
                                           r'views_in_one_call=True'):
        around(SimCLR, views_in_one_call=False).bilevel_step(inputs, None, lrs=0.5)
    # True on the renamed class: exactly the step of the table's SimCLR
    want = around(SimCLR).bilevel_step(inputs, None, lrs=0.5)
    got = around(RenamedSimCLR, views_in_one_call=True).bilevel_step(inputs, None, lrs=0.5)
    for a, b in zip([*got.base_grads, *got.meta_grads], [*want.base_grads, *want.meta_grads]):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match='views_in_one_call'):
        around(SimCLR, views_in_one_call='yes')


# --------------------------------------------------------------------------- small ResNet


def small_algorithm(kind):
    backbone = dict(type='ResNet', depth=18, base_channels=8, stem_channels=8,
                    norm_cfg=dict(type='BN'))
    neck = dict(type='NonLinearNeck', in_channels=64, hid_channels=32, out_channels=16,
                norm_cfg=dict(type='BN1d'))
    preprocessor = dict(type='SelfSupDataPreprocessor', mean=[120.] * 3, std=[60.] * 3,
                        to_rgb=True)
    if kind == 'SimCLR':
        return dict(type='SimCLR', backbone=backbone, neck=neck, data_preprocessor=preprocessor,
                    head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                              temperature=0.1))
    if kind == 'BarlowTwins':
        return dict(type='BarlowTwins', backbone=backbone, data_preprocessor=preprocessor,
                    neck=dict(neck, num_layers=3, with_last_bn=False,
                              with_last_bn_affine=False),
                    head=dict(type='LatentCrossCorrelationHead', in_channels=16,
                              loss=dict(type='CrossCorrelationLoss')))
    return dict(type='BYOL', backbone=backbone, base_momentum=0.1,
                neck=dict(neck, with_last_bn=False), data_preprocessor=preprocessor,
                head=dict(type='LatentPredictHead', loss=dict(type='CosineSimilarityLoss'),
                          predictor=dict(type='NonLinearNeck', in_channels=16, hid_channels=32,
                                         out_channels=16, with_avg_pool=False,
                                         with_last_bn=False, norm_cfg=dict(type='BN1d'))))


def image_batch(seed, n=6):
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randint(0, 256, (n, 3, 32, 32), generator=gen).float() for _ in range(2)]
    return dict(inputs=views, data_samples=[DataSample() for _ in range(n)])


SGD = dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)


def twins(kind, **mcr_kwargs):
    """A base algorithm and an MCR around an exact copy of it, with their optimizers."""
    torch.manual_seed(0)
    base = MODELS.build(small_algorithm(kind))
    mcr = MCR(copy.deepcopy(base), comp_mod=dict(in_channels=64, out_channels=16),
              **mcr_kwargs)
    base_optim = build_optim_wrapper(base, dict(type='OptimWrapper', optimizer=SGD))
    mcr_optim = build_optim_wrapper(mcr, dict(
        constructor='MCROptimWrapperConstructor', base=dict(optimizer=SGD),
        meta=dict(optimizer=dict(type='Adam', lr=1e-2))))
    return base, base_optim, mcr, mcr_optim


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize('kind,meta_grad', [('SimCLR', 'second_order'),
                                            ('SimCLR', 'first_order'),
                                            ('BarlowTwins', 'second_order')])
def test_zero_lambdas_reproduce_the_base_update_exactly(kind, meta_grad):
    base, base_optim, mcr, mcr_optim = twins(kind, lambda1=0.0, lambda2=0.0,
                                            meta_grad=meta_grad)
    for seed in (1, 2):
        base_log = base.train_step(image_batch(seed), base_optim)
        mcr_log = mcr.train_step(image_batch(seed), mcr_optim)
        assert torch.equal(base_log['loss'], mcr_log['loss_ssl'])
    ours, theirs = _state(mcr.algorithm), _state(base)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_virtual_step_leaves_bn_statistics_and_the_byol_target_alone():
    base, base_optim, mcr, mcr_optim = twins('BYOL', lambda1=1.0, lambda2=0.1)
    before = _state(base)
    base.train_step(image_batch(1), base_optim)
    log = mcr.train_step(image_batch(1), mcr_optim)
    assert 'virtual_ssl' in log
    ours, theirs = _state(mcr.algorithm), _state(base)
    params = {n for n, p in base.named_parameters() if p.requires_grad}
    for key in theirs:
        if key in params:
            continue
        # buffers (BN statistics, EMA steps) and the EMA target: one update, as BYOL's
        assert torch.equal(ours[key], theirs[key]), key
    # ... while the online parameters did feel L_mcr
    moved = [k for k in params if not torch.equal(ours[k], theirs[k])]
    assert moved and all(not torch.equal(theirs[k], before[k]) for k in moved)


def test_train_step_needs_the_two_optimizers():
    _, _, mcr, _ = twins('SimCLR')
    plain = OptimWrapper(torch.optim.SGD(mcr.parameters(), lr=0.1))
    with pytest.raises(TypeError, match='MCROptimWrapperConstructor'):
        mcr.train_step(image_batch(1), plain)
    with pytest.raises(KeyError, match='base'):
        build_optim_wrapper(mcr, dict(constructor='MCROptimWrapperConstructor',
                                      base=dict(optimizer=SGD)))


# --------------------------------------------------------------------------- gradient shares


def test_gradient_shares_match_a_direct_computation():
    """||grad_z lambda1 L_mcr|| / ||grad_z L_ssl|| on the neck output z (SimCLR: both
    views interleaved in one call), and ||grad_zhat lambda2 L_comp|| over the same."""
    model = toy_mcr(0.7, 0.3)
    inputs = toy_batch()
    got = model.gradient_shares(inputs, None)

    alg = model.algorithm
    seen = {}
    handle = alg.neck.register_forward_hook(lambda m, a, o: seen.update(z=o[0]))
    l_ssl = alg(inputs, None, mode='loss')['loss']
    handle.remove()
    z = seen['z']
    (g_ssl, ) = torch.autograd.grad(l_ssl, z, retain_graph=True)
    x = torch.stack(inputs, 1).reshape(-1, *inputs[0].shape[1:])
    h = alg.backbone(x)[-1]
    h1, h2, z1, z2 = h[0::2], h[1::2], z[0::2], z[1::2]
    lam, mu = mec_hparams(h1.shape[0], z1.shape[1], eps_sq=1.0)
    mu = 1 / (h1.shape[0] * lam)  # mec_training
    (g_mcr, ) = torch.autograd.grad(0.7 * mcr_loss(model.comp_mod(h1, h2, z1, z2), [z1, z2],
                                                   lam, mu), z, retain_graph=True)
    z_hat = model.comp_mod(h1.detach(), h2.detach(), z1.detach(), z2.detach())
    (g_comp, ) = torch.autograd.grad(0.3 * comp_loss(z_hat, lam, mu), z_hat)
    assert got['mcr'] == pytest.approx(float(g_mcr.norm() / g_ssl.norm()), rel=1e-9)
    assert got['comp'] == pytest.approx(float(g_comp.norm() / g_ssl.norm()), rel=1e-9)
    assert got['mcr'] > 0 and got['comp'] > 0


def test_gradient_shares_touch_no_state():
    _, _, mcr, _ = twins('BYOL', lambda1=1.0, lambda2=0.1)
    before = _state(mcr)
    data = mcr.data_preprocessor(image_batch(1), True)
    mcr.gradient_shares(data['inputs'], data['data_samples'])
    after = _state(mcr)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize('algo', ['simclr', 'byol', 'barlowtwins'])
def test_default_weights_give_the_mcr_terms_a_real_share(algo, small_data, monkeypatch):
    """At the shipped weights each MCR term carries >= 5% of the SSL loss's gradient
    on the embeddings, on the first digits batch (the paper's Table 6 weights, at MEC's
    training scale, carry 0.2-0.5%)."""
    monkeypatch.chdir(ROOT)
    sys.path.insert(0, str(ROOT / 'tools/analysis'))
    from mcr_gradient_shares import first_batch_model
    model, data = first_batch_model(f'configs/mcr/mcr_{algo}_r18_digits.py', seed=0)
    shares = model.gradient_shares(data['inputs'], data['data_samples'])
    assert shares['mcr'] >= 0.05 and shares['comp'] >= 0.05, shares
    model.lambda1, model.lambda2 = 0.01, 0.1
    assert model.gradient_shares(data['inputs'], data['data_samples'])['mcr'] < 0.01


def test_old_scale_names_say_what_they_became():
    for old, new in (('mec_code', 'mec_training'), ('paper', 'coding_length')):
        with pytest.raises(ValueError, match=f"renamed.*'{new}'"):
            toy_mcr(1, 1, mec_scale=old)


# --------------------------------------------------------------------------- through the Runner


def _train(tmp_path, name, max_epochs, resume=False):
    """tools/train.py's path (sslreg.launch), in this process: saves the interpreter
    start-up of a subprocess per run."""
    from mmengine.config import Config
    from sslreg.launch import build_runner, default_collate_for_mmpretrain
    cfg = Config.fromfile(str(ROOT / 'configs/mcr/mcr_simclr_r18_digits.py'))
    cfg.merge_from_dict({
        'train_cfg.max_epochs': max_epochs, 'train_dataloader.dataset.indices': 16,
        'train_dataloader.batch_size': 8, 'default_hooks.logger.interval': 1,
        'model.algorithm.backbone.base_channels': 8,
        'model.algorithm.backbone.stem_channels': 8, 'model.algorithm.neck.in_channels': 64,
        'model.comp_mod.in_channels': 64, 'param_scheduler.base.0.end': 2})
    cfg.work_dir, cfg.experiment_name = str(tmp_path), name
    # resume: a checkpoint path, resumed into its own work dir (MMEngine names log dirs by
    # the second: two runs in one work dir within a second would share one log)
    cfg.resume, cfg.load_from = bool(resume), (str(resume) if resume else None)
    default_collate_for_mmpretrain(cfg)
    runner = build_runner(cfg, 'none')
    runner.train()
    return runner


def _log(runner):
    from pathlib import Path
    return '\n'.join(p.read_text() for p in Path(runner.log_dir).glob('*.log'))


def test_train_checkpoint_and_resume_with_two_optimizers(small_data, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = _train(tmp_path, 'mcr_first', 1)
    assert runner.optim_wrapper['meta'].get_lr()['lr'] == [1e-3]
    log = _log(runner)
    assert re.search(r'base\.lr: \S+\s+meta\.lr: \S+', log)
    assert 'loss_mcr' in log and 'virtual_ssl' in log
    # the gradient shares are logged once, at the first iteration
    assert len(re.findall(r'MCR gradient shares on the first batch: lambda1\*L_mcr \S+%', log)) == 1
    ckpt = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu')
    assert set(ckpt['optimizer']) == {'base', 'meta'}
    assert set(ckpt['param_schedulers']) == {'base', 'meta'}
    assert ckpt['optimizer']['meta']['state']  # Adam moments of xi were saved
    assert any(k.startswith('comp_mod.g_xi') for k in ckpt['state_dict'])
    runner = _train(tmp_path / 'resumed', 'mcr_resumed', 2, resume=tmp_path / 'epoch_1.pth')
    log = _log(runner)
    assert 'resumed epoch: 1' in log.lower() or 'resumed' in log.lower()
    assert 'Epoch(train) [2]' in log and 'Epoch(train) [1]' not in log
    # the base cosine schedule continued from epoch 1: lr(epoch 2) = 0.05 * (1 + cos(pi/2)) / 2
    assert re.search(r'Epoch\(train\) \[2\]\S* +base\.lr: 2\.5000e-02', log)


# --------------------------------------------------------------------------- several processes

WORKER = '''
import sys, torch, torch.distributed as dist
sys.path[:0] = [{tests!r}, {root!r}]
dist.init_process_group('gloo')
rank = dist.get_rank()
from test_mcr import toy_batch, toy_mcr
from sslreg.models.ddp import MCRDataParallel
# SimCLR takes its negatives from every rank (GatherLayer), which couples the ranks'
# losses; with local negatives each rank's objective depends on its shard only and the
# reference below is exact. What is under test is MCR's own averaging.
import mmpretrain.models.selfsup.simclr as simclr
simclr.GatherLayer.apply = staticmethod(lambda z: (z, ))
for mode in ('second_order', 'finite_difference'):
    # rank 1 starts from other weights: the wrapper must broadcast rank 0's
    model = toy_mcr(0.7, 0.3, mode, seed=rank)
    MCRDataParallel(model)
    step = model.bilevel_step(toy_batch(seed=1 + rank), None, lrs=0.5)
    torch.save(dict(base=step.base_grads, meta=step.meta_grads, state=model.state_dict()),
               f'{{sys.argv[1]}}/{{mode}}_rank{{rank}}.pt')
'''


def test_two_processes_follow_the_mean_of_the_ranks_objectives(tmp_path):
    """MCRDataParallel on 2 gloo processes, each with its own shard: the base gradient
    is the mean of the shards' gradients and the xi-gradient is that of the mean of the
    ranks' meta objectives (virtual step with the mean gradient), on both ranks. (The
    workers give SimCLR local negatives, see WORKER.)"""
    from conftest import free_port, run_tool
    script = tmp_path / 'worker.py'
    script.write_text(WORKER.format(tests=str(ROOT / 'tests'), root=str(ROOT)))
    run_tool(sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
             f'--master_port={free_port()}', script, tmp_path, timeout=300,
             env={'OMP_NUM_THREADS': '1'})
    shards = [toy_batch(seed=1), toy_batch(seed=2)]
    reference = toy_mcr(0.7, 0.3, seed=0)
    mean_base = [sum(gs) / 2 for gs in zip(*(
        toy_mcr(0.7, 0.3, seed=0).bilevel_step(s, None, lrs=0.5).base_grads for s in shards))]
    direction = random_direction(reference.meta_parameters())
    numeric = directional_fd(reference, shards, 0.5, 0.7, 0.3, direction)
    assert abs(numeric) > 1e-4
    for mode, rtol in (('second_order', 1e-6), ('finite_difference', 1e-4)):
        ranks = [torch.load(tmp_path / f'{mode}_rank{r}.pt') for r in (0, 1)]
        for key, value in reference.state_dict().items():  # rank 0's weights everywhere
            assert torch.equal(ranks[0]['state'][key], value)
            assert torch.equal(ranks[1]['state'][key], value)
        for r in ranks:
            for got, want in zip(r['base'], mean_base):
                assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
            analytic = sum((g * d).sum() for g, d in zip(r['meta'], direction))
            assert float(analytic) == pytest.approx(numeric, rel=rtol, abs=1e-9)
        for a, b in zip(ranks[0]['meta'], ranks[1]['meta']):
            assert torch.equal(a, b)


def test_several_processes_without_the_mcr_wrapper_fail_clearly(monkeypatch):
    import sslreg.models.mcr as mcr_module
    monkeypatch.setattr(mcr_module, 'get_world_size', lambda: 2)
    model = toy_mcr(0.7, 0.3)
    with pytest.raises(RuntimeError, match="model_wrapper_cfg = dict\\(type='MCRDataParallel'\\)"):
        model(toy_batch(), None, mode='loss')


def test_tools_dist_train_runs_mcr_on_two_processes(small_data, tmp_path):
    """The digits MCR config under tools/dist_train.sh with 2 CPU processes: its
    MCRDataParallel wrapper is built by the Runner, rank 0 logs, the checkpoint loads."""
    from conftest import free_port, run_tool
    run_tool('tools/dist_train.sh', 'configs/mcr/mcr_simclr_r18_digits.py', 2,
             '--work-dir', tmp_path, '--cfg-options', 'train_cfg.max_epochs=1',
             'train_dataloader.dataset.indices=16', 'train_dataloader.batch_size=4',
             'default_hooks.logger.interval=1', 'model.algorithm.backbone.base_channels=8',
             'model.algorithm.backbone.stem_channels=8', 'model.algorithm.neck.in_channels=64',
             'model.comp_mod.in_channels=64', 'param_scheduler.base.0.end=2',
             env={'PORT': str(free_port()), 'OMP_NUM_THREADS': '1'}, timeout=300)
    logs = sorted(tmp_path.glob('*/*.log'))
    assert len(logs) == 1, logs  # rank 0 only
    log = logs[0].read_text()
    assert 'Distributed launcher: pytorch' in log and 'GPU number: 2' in log
    # 16 images, 2 ranks x batch 4: 2 iterations (one process would run 4)
    assert 'Epoch(train) [1][2/2]' in log and 'virtual_ssl' in log
    ckpt = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu')
    assert set(ckpt['optimizer']) == {'base', 'meta'}
    assert any(k.startswith('comp_mod.') for k in ckpt['state_dict'])
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])

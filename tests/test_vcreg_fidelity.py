"""VCReg as the paper defines it, with its ambiguities as named options.

Zhu et al., arXiv:2306.13292. Eq. 2 (the loss) vs Algorithm 1 (App. B, the fast
backward, whose covariance gradient lacks the 1/(n-1) of dC/dz): ``cov_scale``; the
batch mean removal before VCReg (App. A / Algorithm 1): ``demean``; VCReg's share of the
gradient at the regularized layers: ``last_grad_share``. References are written out in
the tests (float64), not taken from sslreg.
"""
import copy
import os
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn

from sslreg.hooks import RegularizerHook
from sslreg.losses.vcreg import (COV_SCALES, batch_demean, vcreg_fast, vcreg_grad_share,
                                 vcreg_loss, vcreg_terms)
from sslreg.regularizers import VCReg

ALPHA, BETA = 0.7, 1.9
LAYOUTS = [((3, 5, 4, 4), 1), ((4, 6, 5), -1), ((40, 6), 1)]
LAYOUT_IDS = ['nchw', 'nlc', 'nc']


def features(shape, channel_dim, seed=0, offset=0.5):
    """Correlated float64 features, channel stds from 0.3 to 2 (hinge on and off)."""
    gen = torch.Generator().manual_seed(seed)
    d = shape[channel_dim]
    moved = list(shape)
    moved.append(moved.pop(channel_dim % len(shape)))
    mix = torch.diag(torch.linspace(0.3, 2.0, d, dtype=torch.float64)) + \
        0.3 * torch.randn(d, d, generator=gen, dtype=torch.float64)
    z = torch.randn(moved, generator=gen, dtype=torch.float64) @ mix + offset
    return z.movedim(-1, channel_dim).contiguous()


def as_samples(x, channel_dim):
    return x.movedim(channel_dim, -1).reshape(-1, x.shape[channel_dim])


def eq2_terms(x, channel_dim, eps=1e-4, delta=None):
    """Eq. 2 written out: (variance term, covariance term) before alpha, beta."""
    z = as_samples(x, channel_dim)
    n, d = z.shape
    zc = z - z.mean(0)
    C = zc.T @ zc / (n - 1)
    std = torch.sqrt(torch.diagonal(C) + eps)
    off = C[~torch.eye(d, dtype=torch.bool)]
    phi = off ** 2 if delta is None else torch.where(
        off.abs() <= delta, off ** 2, 2 * delta * off.abs() - delta ** 2)
    return torch.relu(1 - std).sum() / d, phi.sum() / (d * (d - 1)), n


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def fast_added_grad(x, **kwargs):
    """The gradient vcreg_fast adds (upstream zero)."""
    x = x.detach().clone().requires_grad_(True)
    y = vcreg_fast(x, **kwargs)
    return torch.autograd.grad(y, x, torch.zeros_like(x))[0]


# ------------------------------------------------------------------ cov_scale
@pytest.mark.parametrize('delta', [None, 0.05], ids=['squares', 'smooth-l1'])
@pytest.mark.parametrize('shape,channel_dim', LAYOUTS, ids=LAYOUT_IDS)
def test_algorithm1_covariance_gradient_is_n_minus_1_times_eq2(shape, channel_dim, delta):
    x = features(shape, channel_dim).requires_grad_(True)
    _, cov, n = eq2_terms(x, channel_dim, delta=delta)
    g_eq2 = torch.autograd.grad(BETA * cov, x)[0]  # alpha = 0: the covariance term alone
    kw = dict(alpha=0.0, beta=BETA, delta=delta, channel_dim=channel_dim)
    g_alg1 = fast_added_grad(x, cov_scale='algorithm1', **kw)
    assert rel(g_alg1, (n - 1) * g_eq2) < 1e-10
    # and the default stays Eq. 2 (so the two really differ, by n - 1)
    assert rel(fast_added_grad(x, **kw), g_eq2) < 1e-10
    assert n > 2 and rel(g_alg1, g_eq2) > 0.5


@pytest.mark.parametrize('shape,channel_dim', LAYOUTS, ids=LAYOUT_IDS)
def test_algorithm1_leaves_the_variance_gradient_as_eq2(shape, channel_dim):
    x = features(shape, channel_dim).requires_grad_(True)
    var, _, _ = eq2_terms(x, channel_dim)
    g_eq2 = torch.autograd.grad(ALPHA * var, x)[0]
    assert g_eq2.abs().sum() > 0  # some channels below std 1
    g_alg1 = fast_added_grad(x, alpha=ALPHA, beta=0.0, channel_dim=channel_dim,
                             cov_scale='algorithm1')
    assert rel(g_alg1, g_eq2) < 1e-10


def test_algorithm1_matches_its_backward_written_out():
    """Algorithm 1's backward on a demeaned input, as App. B describes it:
    -alpha/(d(n-1)) z diag(1/std)[std < 1] + 4 beta/(d(d-1)) z C_offdiag (no 1/(n-1))."""
    x = features((3, 5, 4, 4), 1)
    z = as_samples(x, 1)
    z = z - z.mean(0)  # "we apply a batch demean operation before calling the function"
    n, d = z.shape
    eps = 1e-4
    C = z.T @ z / (n - 1)
    rstd = torch.rsqrt(torch.diagonal(C) + eps)
    var_grad = -ALPHA / (d * (n - 1)) * z * (rstd * (rstd > 1))
    cov_grad = 4 * BETA / (d * (d - 1)) * z @ C.fill_diagonal_(0)
    alg1 = var_grad + cov_grad
    g = fast_added_grad(z, alpha=ALPHA, beta=BETA, eps=eps, channel_dim=1,
                        cov_scale='algorithm1')
    assert rel(g, alg1) < 1e-10


@pytest.mark.parametrize('delta', [None, 0.05], ids=['squares', 'smooth-l1'])
@pytest.mark.parametrize('shape,channel_dim', LAYOUTS, ids=LAYOUT_IDS)
def test_fast_algorithm1_is_autograd_of_the_explicit_algorithm1_loss(shape, channel_dim, delta):
    x = features(shape, channel_dim).requires_grad_(True)
    kw = dict(alpha=ALPHA, beta=BETA, delta=delta, channel_dim=channel_dim,
              cov_scale='algorithm1')
    loss = vcreg_loss(x, **kw)
    var, cov, n = eq2_terms(x, channel_dim, delta=delta)
    # the explicit loss Algorithm 1 is the gradient of: Eq. 2 with beta times n - 1
    assert loss.item() == pytest.approx((ALPHA * var + (n - 1) * BETA * cov).item(), rel=1e-12)
    g_explicit = torch.autograd.grad(loss, x)[0]
    stats = []
    g_fast = fast_added_grad(x, stats=stats, **kw)
    assert rel(g_fast, g_explicit) < 1e-10
    assert stats[0].item() == pytest.approx(loss.item(), rel=1e-12)
    v, c = vcreg_terms(x, delta=delta, channel_dim=channel_dim, cov_scale='algorithm1')
    assert (ALPHA * v + BETA * c).item() == pytest.approx(loss.item(), rel=1e-12)
    assert vcreg_loss(x, ALPHA, BETA, delta=delta, channel_dim=channel_dim).item() == \
        pytest.approx((ALPHA * var + BETA * cov).item(), rel=1e-12)


def test_bad_cov_scale_is_a_clear_error():
    x = features((4, 3, 2, 2), 1).requires_grad_(True)
    calls = [lambda: vcreg_loss(x, cov_scale='alg1'),
             lambda: vcreg_fast(x, 1.0, 1.0, cov_scale='alg1'),
             lambda: vcreg_terms(x, cov_scale='alg1'),
             lambda: VCReg(layers='x', cov_scale='alg1')]
    for call in calls:
        with pytest.raises(ValueError, match="cov_scale.*'eq2', 'algorithm1'.*'alg1'"):
            call()
    assert COV_SCALES == ('eq2', 'algorithm1')


# ------------------------------------------------------------------ batch_demean
@pytest.mark.parametrize('shape,channel_dim', LAYOUTS, ids=LAYOUT_IDS)
def test_batch_demean_removes_the_mean_and_differentiates_as_x_minus_mean(shape, channel_dim):
    x = features(shape, channel_dim, offset=3.0).requires_grad_(True)
    y, mean = batch_demean(x, channel_dim)
    dims = [i for i in range(x.dim()) if i != channel_dim % x.dim()]
    assert as_samples(y, channel_dim).mean(0).abs().max() < 1e-12
    assert torch.allclose(mean, x.mean(dims))
    w = torch.randn(shape, dtype=torch.float64)
    g = torch.autograd.grad((y * w).sum(), x)[0]
    ref = torch.autograd.grad(((x - x.mean(dims, keepdim=True)) * w).sum(), x)[0]
    assert rel(g, ref) < 1e-12


# ------------------------------------------------------------------ the regularizer
class Toy(BaseModel):
    """stem + 2 conv blocks + linear head; task loss: mean squared head output."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.backbone.layers = nn.Sequential(
            nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(5, 6, 3, stride=2, padding=1), nn.Tanh()))
        self.head = nn.Linear(6, 3)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.backbone.layers(self.backbone.stem(inputs))
        out = self.head(feats.mean((2, 3)))
        return dict(loss=(out - 0.3).square().mean()) if mode == 'loss' else out


def wrap(**vcreg):
    torch.manual_seed(0)
    vcreg.setdefault('layers', 'backbone.layers.*')
    return MODELS.build(dict(type='RegularizedModel', architecture=Toy(),
                             regularizers=dict(v=dict(type='VCReg', **vcreg)),
                             probe_input=(1, 3, 8, 8))).double()


def bare_copy(arch):
    """A copy of the architecture without the regularizer's forward hooks."""
    arch = copy.deepcopy(arch)
    for module in arch.modules():
        module._forward_hooks.clear()
    return arch


def batch(seed=1):
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64) + 0.5


def param_grads(model, x):
    model.zero_grad()
    losses = model(x, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return losses, {n: p.grad.clone() for n, p in model.architecture.named_parameters()}


def reference_grads(arch, x, alpha, beta, cov_scale, demean):
    """Task + VCReg on each block output, the demean written as x - x.mean: autograd."""
    arch = bare_copy(arch)
    outs = []

    def hook(module, args, out):
        if demean:
            out = out - out.mean((0, 2, 3), keepdim=True)
        outs.append(out)
        return out

    handles = [b.register_forward_hook(hook) for b in arch.backbone.layers]
    loss = arch(x, mode='loss')['loss']
    loss = loss + sum(vcreg_loss(o, alpha, beta, cov_scale=cov_scale) for o in outs)
    arch.zero_grad()
    loss.backward()
    for h in handles:
        h.remove()
    return {n: p.grad.clone() for n, p in arch.named_parameters()}, outs


@pytest.mark.parametrize('mode', ['fast', 'explicit'])
@pytest.mark.parametrize('cov_scale', ['eq2', 'algorithm1'])
def test_regularizer_gradient_matches_autograd_reference(mode, cov_scale):
    model = wrap(alpha=0.5, beta=0.02, mode=mode, cov_scale=cov_scale, demean=True)
    x = batch()
    ref, _ = reference_grads(model.architecture, x, 0.5, 0.02, cov_scale, demean=True)
    _, got = param_grads(model, x)
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-9, atol=1e-13)
    # the demean and the scale matter: without them the gradients differ
    plain, _ = reference_grads(model.architecture, x, 0.5, 0.02, 'eq2', demean=False)
    assert any(not torch.allclose(got[n], plain[n]) for n in ref)


def _inputs_of(module, fn):
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        fn()
    finally:
        handle.remove()
    return seen[0]


def test_demean_in_training_changes_the_forward_and_feeds_the_next_layer():
    model = wrap(alpha=1.0, beta=1.0, demean=True)
    bare = bare_copy(model.architecture)
    x = batch()
    model.train()
    nxt = model.architecture.backbone.layers[1]
    seen = _inputs_of(nxt, lambda: model(x, mode='loss'))
    # block 0's output as the next block sees it: zero mean over batch x positions
    assert seen.mean((0, 2, 3)).abs().max() < 1e-12
    raw = bare.backbone.layers[0](bare.backbone.stem(x))
    assert raw.mean((0, 2, 3)).abs().min() > 1e-3  # (ReLU output: the mean was not zero)
    torch.testing.assert_close(seen, raw - raw.mean((0, 2, 3), keepdim=True))
    # and demean=False leaves the forward untouched
    off = wrap(alpha=1.0, beta=1.0)
    seen_off = _inputs_of(off.architecture.backbone.layers[1], lambda: off(x, mode='loss'))
    torch.testing.assert_close(seen_off, raw)


def test_demean_running_mean_updates_in_training_only_and_is_used_in_eval(tmp_path):
    model = wrap(demean=True)
    reg = model.regularizers.v
    key = 'running_mean__backbone__layers__0'
    assert torch.equal(getattr(reg, key), torch.zeros(5, dtype=torch.float64))
    x1, x2 = batch(1), batch(2)
    bare = bare_copy(model.architecture)
    raw1 = bare.backbone.layers[0](bare.backbone.stem(x1))
    raw2 = bare.backbone.layers[0](bare.backbone.stem(x2))
    model.train()
    model(x1, mode='loss')
    expected = 0.1 * raw1.mean((0, 2, 3))  # BatchNorm's momentum 0.1 from zeros
    torch.testing.assert_close(getattr(reg, key), expected.detach())
    model(x2, mode='tensor')  # training mode, not collecting: still a demean layer
    expected = 0.9 * expected + 0.1 * raw2.mean((0, 2, 3))
    torch.testing.assert_close(getattr(reg, key), expected.detach())

    model.eval()
    before = {k: v.clone() for k, v in reg.state_dict().items()}
    nxt = model.architecture.backbone.layers[1]
    seen = _inputs_of(nxt, lambda: model(x1, mode='tensor'))
    torch.testing.assert_close(seen, (raw1 - expected.view(1, -1, 1, 1)).detach())
    for k, v in reg.state_dict().items():
        assert torch.equal(v, before[k]), f'{k} changed in eval'

    # saved in the state dict, restored by load_state_dict
    state = model.state_dict()
    assert f'regularizers.v.{key}' in state
    assert 'regularizers.v.running_mean__backbone__layers__1' in state
    torch.save(state, tmp_path / 'ckpt.pth')
    fresh = wrap(demean=True).eval()
    fresh.load_state_dict(torch.load(tmp_path / 'ckpt.pth'), strict=True)
    assert torch.equal(fresh(x1, mode='tensor'), model(x1, mode='tensor'))
    # and demean off has no buffers
    assert not any('running_mean' in k for k in wrap().state_dict())


def test_demean_taps_are_refused_by_the_hook():
    hook = RegularizerHook(regularizers=dict(v=dict(type='VCReg', layers='backbone.layers.*',
                                                    demean=True)))
    runner = _FakeRunner(Toy().double())
    with pytest.raises(ValueError, match=r'needs a probe forward .*demean=True.*RegularizedModel'):
        hook.before_train(runner)


def test_vcreg_neck_demean_needs_widths_and_keeps_a_running_mean():
    with pytest.raises(ValueError, match='in_channels'):
        MODELS.build(dict(type='VCRegNeck', demean=True))
    neck = MODELS.build(dict(type='VCRegNeck', demean=True, in_channels=6,
                             cov_scale='algorithm1', alpha=0.3, beta=0.01)).double()
    assert neck.cov_scale == 'algorithm1' and 'running_mean' in neck.state_dict()
    x = features((8, 6), 1, offset=2.0).requires_grad_(True)
    neck.train()
    y = neck(x)
    assert y.mean(0).abs().max() < 1e-12
    # gradient: through x - mean, plus the algorithm1 VCReg gradient of the demeaned x
    w = torch.randn(8, 6, dtype=torch.float64)
    g = torch.autograd.grad((y * w).sum(), x)[0]
    x2 = x.detach().clone().requires_grad_(True)
    y2 = x2 - x2.mean(0)
    ref = torch.autograd.grad((y2 * w).sum() + vcreg_loss(y2, 0.3, 0.01,
                                                          cov_scale='algorithm1'), x2)[0]
    assert rel(g, ref) < 1e-10
    torch.testing.assert_close(neck.running_mean, 0.1 * x.detach().mean(0))
    neck.eval()
    torch.testing.assert_close(neck(x).detach(), (x - neck.running_mean).detach())


def test_vcreg_neck_demean_on_multi_level_features():
    neck = MODELS.build(dict(type='VCRegNeck', demean=True, in_channels=[4, 6])).double()
    assert {'running_mean', 'running_mean__out1'} <= set(neck.state_dict())
    levels = (features((2, 4, 3, 3), 1, offset=1.0).requires_grad_(True),
              features((2, 6, 2, 2), 1, offset=-2.0).requires_grad_(True))
    out = neck.train()(levels)
    assert isinstance(out, tuple) and len(out) == 2
    for y, x in zip(out, levels):
        assert y.mean((0, 2, 3)).abs().max() < 1e-12
    torch.testing.assert_close(neck.running_mean__out1, 0.1 * levels[1].detach().mean((0, 2, 3)))
    with pytest.raises(ValueError, match='channels'):
        neck((levels[1], levels[0]))  # widths swapped


# ------------------------------------------------------------------ gradient share
def direct_share(arch, x, alpha, beta, layers, cov_scale='eq2'):
    """sqrt(sum ||g_v||^2) / sqrt(sum ||g_y||^2) by autograd: g_v = grad of each
    block's own VCReg loss at its output, g_y = total gradient there minus g_v."""
    arch = bare_copy(arch)
    outs = []
    handles = [arch.backbone.layers[i].register_forward_hook(
        lambda m, a, o: outs.append(o) or o.retain_grad()) for i in layers]
    loss = arch(x, mode='loss')['loss'] + sum(vcreg_loss(o, alpha, beta, cov_scale=cov_scale)
                                              for o in outs)
    loss.backward()
    for h in handles:
        h.remove()
    vsq = tsq = 0.0
    for o in outs:
        leaf = o.detach().requires_grad_(True)
        g_v = torch.autograd.grad(vcreg_loss(leaf, alpha, beta, cov_scale=cov_scale), leaf)[0]
        vsq += g_v.square().sum().item()
        tsq += (o.grad - g_v).square().sum().item()
    return (vsq / tsq) ** 0.5, vsq ** 0.5, tsq ** 0.5


@pytest.mark.parametrize('mode', ['fast', 'explicit'])
@pytest.mark.parametrize('cov_scale', ['eq2', 'algorithm1'])
def test_grad_share_equals_a_direct_computation(mode, cov_scale):
    model = wrap(alpha=0.4, beta=0.03, mode=mode, cov_scale=cov_scale, loss_weight=0.5)
    reg = model.regularizers.v
    assert reg.last_grad_share is None
    x = batch()
    param_grads(model, x)
    share, v, t = direct_share(model.architecture, x, 0.2, 0.015, [0, 1], cov_scale)
    assert reg.last_grad_count == 2
    assert reg.last_grad_share == pytest.approx(share, rel=1e-9)
    assert reg.last_grad_norms == pytest.approx((v, t), rel=1e-9)
    # the next step starts afresh (not accumulated over steps)
    param_grads(model, batch(2))
    assert reg.last_grad_count == 2
    assert reg.last_grad_share == pytest.approx(
        direct_share(model.architecture, batch(2), 0.2, 0.015, [0, 1], cov_scale)[0], rel=1e-9)


def test_grad_share_of_one_layer_is_linear_in_the_weight_and_matches_the_diagnostic():
    shares = []
    for weight in (1.0, 2.0):
        model = wrap(layers='backbone.layers.0', alpha=0.4, beta=0.03, loss_weight=weight)
        param_grads(model, batch())
        shares.append(model.regularizers.v.last_grad_share)
    assert shares[1] == pytest.approx(2 * shares[0], rel=1e-9)
    # vcreg_grad_share (autograd) on the same tensor and task gradient
    arch = bare_copy(model.architecture)
    out = []
    arch.backbone.layers[0].register_forward_hook(lambda m, a, o: out.append(o) or o.retain_grad())
    arch(batch(), mode='loss')['loss'].backward()
    diag = vcreg_grad_share(out[0].detach(), out[0].grad, 0.4, 0.03)
    assert diag.item() == pytest.approx(shares[0], rel=1e-9)


@pytest.mark.parametrize('cov_scale', ['eq2', 'algorithm1'])
@pytest.mark.parametrize('shape,channel_dim,ratio', [
    ((3, 5, 4, 4), 1, 1.0),    # 48 rows >= 10 d: the d x d trace form
    ((4, 6, 5), -1, 1.0),      # 24 rows < 10 d: the added gradient formed on its own
    ((40, 6), 1, 1.0),         # row layout, trace form
    ((3, 5, 4, 4), 1, 0.5),    # sampled statistics
], ids=['nchw-trace', 'nlc-separate', 'nc-trace', 'nchw-sampled'])
def test_fast_grad_norms_are_the_norms_of_added_and_incoming_gradients(shape, channel_dim,
                                                                      ratio, cov_scale):
    x = features(shape, channel_dim).requires_grad_(True)
    w = torch.randn(shape, dtype=torch.float64)
    norms = []
    kw = dict(alpha=ALPHA, beta=BETA, channel_dim=channel_dim, sample_ratio=ratio,
              cov_scale=cov_scale)
    torch.manual_seed(5)
    g = torch.autograd.grad(vcreg_fast(x, grad_norms=norms, **kw), x, w)[0]
    torch.manual_seed(5)
    g_added = fast_added_grad(x, **kw)  # the same sampling draw
    assert len(norms) == 1
    added_sq, incoming_sq = (t.item() for t in norms[0])
    assert added_sq == pytest.approx(g_added.square().sum().item(), rel=1e-9)
    assert added_sq == pytest.approx((g - w).square().sum().item(), rel=1e-9)
    assert incoming_sq == pytest.approx(w.square().sum().item(), rel=1e-12)


from conftest import FakeRunner as _FakeRunner  # noqa: E402


def test_wrapper_logs_the_grad_share_of_its_vcreg_once(monkeypatch):
    """RegularizedModel logs at its second training forward (the first backward has run),
    once; a RegularizerHook without VCRegs of its own adds no second line."""
    import sslreg.models.regularized_model as rm
    lines = []
    monkeypatch.setattr(rm, 'print_log', lambda msg, logger=None: lines.append(msg))
    model = wrap(alpha=0.4, beta=0.03, cov_scale='algorithm1')
    runner = _FakeRunner(model)
    hook = RegularizerHook()
    hook.before_train(runner)
    x = batch()
    param_grads(model, x)
    hook.after_train_iter(runner, 0)
    hook_lines = lambda: [m for m in runner.logger.lines if 'gradient share' in m]  # noqa: E731
    assert lines == [] and hook_lines() == []
    share = model.regularizers.v.last_grad_share
    param_grads(model, x)
    assert len(lines) == 1 and 'v:' in lines[0] and f'{share:.4g}' in lines[0]
    assert 'cov_scale=algorithm1' in lines[0]
    param_grads(model, x)
    hook.after_train_iter(runner, 1)
    assert len(lines) == 1 and hook_lines() == []


def test_hook_logs_the_grad_share_of_its_own_vcreg_once():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='RegularizedModel', architecture=Toy(),
                              probe_input=(1, 3, 8, 8))).double()
    runner = _FakeRunner(model)
    hook = RegularizerHook(regularizers=dict(
        v=dict(type='VCReg', layers='backbone.layers.*', alpha=0.4, beta=0.03)))
    hook.before_train(runner)
    x = batch()
    param_grads(model, x)
    hook.after_train_iter(runner, 0)
    share = hook.regularizers['v'].last_grad_share
    found = [m for m in runner.logger.lines if 'gradient share' in m]
    assert len(found) == 1 and f'{share:.4g}' in found[0]
    param_grads(model, x)
    hook.after_train_iter(runner, 1)
    assert len([m for m in runner.logger.lines if 'gradient share' in m]) == 1


# ------------------------------------------------------------------ sync
def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _sync_case():
    x = features((5, 4, 3, 3), 1, seed=3, offset=1.5)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return x, w


def _sync_worker(rank, world, port, out_dir):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        x_all, w_all = _sync_case()
        x = x_all.chunk(world)[rank].clone().requires_grad_(True)
        y, mean = batch_demean(x, 1, sync=True)
        loss = vcreg_loss(y, ALPHA, BETA, sync=True, cov_scale='algorithm1')
        ((y * w_all.chunk(world)[rank]).sum() + loss).backward()
        torch.save(dict(y=y.detach(), mean=mean.detach(), loss=loss.detach(), grad=x.grad),
                   os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                    reason='needs torch.distributed with the gloo backend')
def test_sync_demean_and_algorithm1_use_the_global_batch(tmp_path):
    world = 2
    mp.spawn(_sync_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(world)]
    x_all, w_all = _sync_case()
    x = x_all.clone().requires_grad_(True)
    y = x - x.mean((0, 2, 3), keepdim=True)
    loss = vcreg_loss(y, ALPHA, BETA, cov_scale='algorithm1')  # global n = 5*3*3
    _, cov, n = eq2_terms(y, 1)
    assert n == 45
    # the joined batch's objective is the mean over ranks of (local task + shared VCReg);
    # each rank back-propagates its own task part plus the sum of the ranks' VCReg losses
    ((y * w_all).sum() + world * loss).backward()
    for rank, res in enumerate(ranks):
        torch.testing.assert_close(res['mean'], x_all.mean((0, 2, 3)))
        torch.testing.assert_close(res['y'], y.detach().chunk(world)[rank])
        assert res['loss'].item() == pytest.approx(loss.item(), rel=1e-10)
        torch.testing.assert_close(res['grad'], x.grad.chunk(world)[rank], rtol=1e-8, atol=1e-12)

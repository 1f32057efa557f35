"""Tests of sslreg.losses.vcreg.

The loss value is pinned to a direct float64 evaluation of the paper's formula
(loops over channel pairs, numpy), its gradient to finite differences
(gradcheck); vcreg_fast's hand-derived backward is pinned to autograd through
vcreg_loss. The distributed test spawns two gloo processes on localhost.
"""
import math
import os
import socket
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sslreg.losses import vcreg_fast, vcreg_loss

ALPHA, BETA = 0.7, 1.9

# (shape, channel_dim): NCHW batched path (H*W >= C), NCHW with H*W < C (row path),
# tokens, plain vectors, channel axis first.
LAYOUTS = [
    ((2, 6, 5, 5), 1),
    ((3, 10, 2, 2), 1),
    ((3, 7, 6), -1),
    ((30, 5), 1),
    ((5, 4, 6), 0),
]
LAYOUT_IDS = ['nchw', 'nchw-few-positions', 'nlc', 'nc', 'channels-first']


def make_features(shape, channel_dim, generator, dtype=torch.float64):
    """Correlated features whose channel stds straddle 1 (hinge on for some, off for others)."""
    d = shape[channel_dim]
    moved = list(shape)
    moved.append(moved.pop(channel_dim % len(shape)))
    scales = torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    mixing = torch.diag(scales) + 0.3 * torch.randn(d, d, generator=generator, dtype=torch.float64)
    z = torch.randn(moved, generator=generator, dtype=torch.float64) @ mixing + 0.5
    return z.movedim(-1, channel_dim).to(dtype).contiguous()


def direct_covariance(x, channel_dim):
    a = np.moveaxis(x.detach().double().numpy(), channel_dim, -1)
    z = a.reshape(-1, a.shape[-1])
    n, d = z.shape
    mean = np.array([math.fsum(z[:, i]) / n for i in range(d)])
    C = np.empty((d, d))
    for i in range(d):
        for j in range(d):
            C[i, j] = math.fsum((z[:, i] - mean[i]) * (z[:, j] - mean[j])) / (n - 1)
    return C


def direct_vcreg(x, alpha, beta, eps, delta, channel_dim):
    """The paper's equation evaluated term by term."""
    C = direct_covariance(x, channel_dim)
    d = C.shape[0]

    def phi(c):
        if delta is None or abs(c) <= delta:
            return c * c
        return 2 * delta * abs(c) - delta * delta

    variance = sum(max(0.0, 1 - math.sqrt(C[i, i] + eps)) for i in range(d)) / d
    covariance = sum(phi(C[i, j]) for i in range(d) for j in range(d) if i != j) / (d * (d - 1))
    return alpha * variance + beta * covariance


def median_offdiag_cov(x, channel_dim):
    """A delta with covariances on both sides of it."""
    C = direct_covariance(x, channel_dim)
    off = np.abs(C[~np.eye(C.shape[0], dtype=bool)])
    delta = float(np.median(off))
    assert (off < delta).any() and (off > delta).any()
    return delta


def autograd_grad(x, **kwargs):
    x = x.detach().clone().requires_grad_()
    loss = vcreg_loss(x, **kwargs)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fast_grad(x, upstream, **kwargs):
    x = x.detach().clone().requires_grad_()
    y = vcreg_fast(x, **kwargs)
    (y * upstream).sum().backward()
    return x.grad


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# --------------------------------------------------------------------------- value


@pytest.mark.parametrize('use_delta', [False, True], ids=['squared', 'smooth-l1'])
@pytest.mark.parametrize('shape,channel_dim', LAYOUTS, ids=LAYOUT_IDS)
def test_loss_matches_direct_formula(shape, channel_dim, use_delta, gen):
    x = make_features(shape, channel_dim, gen)
    delta = median_offdiag_cov(x, channel_dim) if use_delta else None
    C = direct_covariance(x, channel_dim)
    stds = np.sqrt(np.diag(C))
    assert (stds < 1).any() and (stds > 1).any(), 'data should exercise both hinge sides'

    loss = vcreg_loss(x, ALPHA, BETA, eps=1e-4, delta=delta, channel_dim=channel_dim)

    expected = direct_vcreg(x, ALPHA, BETA, 1e-4, delta, channel_dim)
    assert loss.dim() == 0 and loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_samples_are_all_non_channel_positions(gen):
    # (N, C, H, W) must equal the same features laid out as N*H*W rows.
    x = make_features((2, 4, 3, 5), 1, gen)
    rows = x.permute(0, 2, 3, 1).reshape(-1, 4)
    assert vcreg_loss(x).item() == pytest.approx(vcreg_loss(rows).item(), rel=1e-12)


@pytest.mark.parametrize('delta', [None, 0.05])
def test_loss_gradient_matches_finite_differences(delta, gen):
    x = make_features((2, 4, 3, 3), 1, gen).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: vcreg_loss(t, ALPHA, BETA, delta=delta), (x,), eps=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- fast form


@pytest.mark.parametrize('use_delta', [False, True], ids=['squared', 'smooth-l1'])
@pytest.mark.parametrize('shape,channel_dim', LAYOUTS, ids=LAYOUT_IDS)
def test_fast_gradient_equals_autograd_plus_upstream(shape, channel_dim, use_delta, gen):
    x = make_features(shape, channel_dim, gen)
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)
    kwargs = dict(alpha=ALPHA, beta=BETA, eps=1e-4, channel_dim=channel_dim,
                  delta=median_offdiag_cov(x, channel_dim) if use_delta else None)

    got = fast_grad(x, upstream, **kwargs)

    expected = upstream + autograd_grad(x, **kwargs)
    assert got.shape == x.shape and got.dtype == x.dtype
    assert rel_err(got - upstream, expected - upstream) < 1e-6


def test_fast_forward_is_identity_view(gen):
    x = make_features((2, 6, 5, 5), 1, gen).requires_grad_()
    y = vcreg_fast(x, ALPHA, BETA)
    assert y is not x
    assert y.data_ptr() == x.data_ptr()  # a view: the identity costs no copy
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y, x)
    assert y.requires_grad and y.grad_fn is not None


def test_fast_stats_records_the_loss_value(gen):
    x = make_features((3, 7, 6), -1, gen).requires_grad_()
    stats = []
    vcreg_fast(x, ALPHA, BETA, delta=0.1, channel_dim=-1, stats=stats)
    assert len(stats) == 1 and stats[0].dim() == 0 and not stats[0].requires_grad
    expected = direct_vcreg(x, ALPHA, BETA, 1e-4, 0.1, -1)
    assert stats[0].item() == pytest.approx(expected, rel=1e-12)


def test_fast_without_grad_returns_input(gen):
    x = make_features((2, 6, 5, 5), 1, gen)
    stats = []
    assert vcreg_fast(x, ALPHA, BETA, stats=stats) is x
    assert stats[0].item() == pytest.approx(direct_vcreg(x, ALPHA, BETA, 1e-4, None, 1), rel=1e-12)
    x.requires_grad_()
    with torch.no_grad():
        assert vcreg_fast(x, ALPHA, BETA) is x


def test_fast_gradient_for_strided_inputs(gen):
    # A channels_last map and a transposed (non-contiguous) token view.
    x = make_features((2, 6, 4, 4), 1, gen).contiguous(memory_format=torch.channels_last)
    w = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    assert rel_err(fast_grad(x, w, alpha=ALPHA, beta=BETA) - w,
                   autograd_grad(x, alpha=ALPHA, beta=BETA)) < 1e-6
    t = make_features((3, 5, 8), 1, gen).transpose(1, 2)  # (N, L, C) view, channel last
    w = torch.randn(t.shape, generator=gen, dtype=torch.float64)
    kwargs = dict(alpha=ALPHA, beta=BETA, channel_dim=-1)
    assert rel_err(fast_grad(t, w, **kwargs) - w, autograd_grad(t, **kwargs)) < 1e-6


@pytest.mark.parametrize('case', ['dead-channel', 'constant'])
def test_no_nan_for_zero_variance(case, gen):
    x = make_features((2, 6, 4, 4), 1, gen)
    if case == 'dead-channel':
        x[:, 2] = 0.25
    else:
        x = torch.full_like(x, 0.3)
    w = torch.zeros_like(x)
    loss = vcreg_loss(x, ALPHA, BETA)
    g_auto = autograd_grad(x, alpha=ALPHA, beta=BETA)
    g_fast = fast_grad(x, w, alpha=ALPHA, beta=BETA)
    assert torch.isfinite(loss) and torch.isfinite(g_auto).all() and torch.isfinite(g_fast).all()
    assert torch.allclose(g_fast, g_auto, rtol=1e-6, atol=1e-12)
    if case == 'dead-channel':
        assert rel_err(g_fast, g_auto) < 1e-6
        # A dead channel is stuck: its centred samples are zero, so is its gradient.
        assert torch.all(g_fast[:, 2] == 0)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_statistics_in_float32(dtype, gen):
    x = make_features((2, 6, 5, 5), 1, gen, dtype=dtype)
    loss = vcreg_loss(x, ALPHA, BETA)
    assert loss.dtype == torch.float32
    # The upcast is exact, so this is the float32 computation on the same numbers.
    assert loss.item() == pytest.approx(vcreg_loss(x.float(), ALPHA, BETA).item(), rel=1e-6)

    w = torch.randn(x.shape, generator=gen).to(dtype)
    grad = fast_grad(x, w, alpha=ALPHA, beta=BETA)
    assert grad.dtype == dtype
    expected = fast_grad(x.float(), w.float(), alpha=ALPHA, beta=BETA)
    assert torch.allclose(grad.float(), expected, rtol=1e-2, atol=1e-2)


def test_autocast_does_not_lower_statistics_precision(gen):
    x = make_features((2, 6, 5, 5), 1, gen, dtype=torch.float32)
    plain = vcreg_loss(x, ALPHA, BETA)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        under_autocast = vcreg_loss(x, ALPHA, BETA)
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(plain.item(), rel=1e-6)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize('fn', [vcreg_loss, vcreg_fast])
@pytest.mark.parametrize('shape,channel_dim,what', [
    ((1, 8), 1, 'n=1'),
    ((4, 1, 3, 3), 1, 'd=1'),
    ((1, 5, 1, 1), 1, 'n=1'),
    ((1, 1, 6), -1, 'n=1'),
])
def test_too_few_samples_or_channels(fn, shape, channel_dim, what):
    x = torch.randn(shape, requires_grad=True)
    with pytest.raises(ValueError) as info:
        fn(x, 1.0, 1.0, channel_dim=channel_dim)
    message = str(info.value)
    assert str(shape) in message and f'channel_dim={channel_dim}' in message
    assert what in message and 'channel_dim at the feature axis' in message


@pytest.mark.parametrize('fn', [vcreg_loss, vcreg_fast])
def test_invalid_hyperparameters(fn):
    x = torch.randn(4, 3, requires_grad=True)
    for eps in (0.0, -1e-4):
        with pytest.raises(ValueError, match='eps must be > 0'):
            fn(x, 1.0, 1.0, eps=eps)
    for delta in (0.0, -0.5):
        with pytest.raises(ValueError, match='delta must be None'):
            fn(x, 1.0, 1.0, delta=delta)
    with pytest.raises(ValueError, match='channel_dim=2 does not fit'):
        fn(x, 1.0, 1.0, channel_dim=2)


# --------------------------------------------------------------------------- sync


def test_sync_without_process_group_is_a_no_op(gen):
    assert not dist.is_initialized()
    x = make_features((2, 6, 5, 5), 1, gen)
    assert vcreg_loss(x, sync=True).item() == vcreg_loss(x).item()
    w = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    assert torch.equal(fast_grad(x, w, alpha=1.0, beta=1.0, sync=True),
                       fast_grad(x, w, alpha=1.0, beta=1.0))


WORLD = 2


def _ddp_cases():
    """Joined batches; the batch of 5 splits unevenly (3 + 2) over the two ranks."""
    gen = torch.Generator().manual_seed(11)
    cases = {}
    for name, shape, channel_dim in [('nchw', (5, 6, 3, 3), 1), ('nlc', (5, 4, 6), -1)]:
        x = make_features(shape, channel_dim, gen)
        w = torch.randn(shape, generator=gen, dtype=torch.float64)
        cases[name] = (x, w, channel_dim, median_offdiag_cov(x, channel_dim))
    inputs = torch.randn(5, 4, 3, generator=gen, dtype=torch.float64)
    weight = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    return cases, inputs, weight


def _ddp_worker(rank, world_size, port, out_dir):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=60))
    try:
        cases, inputs, weight = _ddp_cases()
        results = {}
        for name, (x_all, w_all, channel_dim, delta) in cases.items():
            kwargs = dict(alpha=ALPHA, beta=BETA, delta=delta, channel_dim=channel_dim, sync=True)
            rows = x_all.chunk(world_size)[rank]
            x = rows.clone().requires_grad_()
            stats = []
            y = vcreg_fast(x, stats=stats, **kwargs)
            (y * w_all.chunk(world_size)[rank]).sum().backward()
            x_explicit = rows.clone().requires_grad_()
            loss = vcreg_loss(x_explicit, **kwargs)
            loss.backward()
            results[name] = dict(fast_grad=x.grad, fast_value=stats[0], loss=loss.detach(),
                                 loss_grad=x_explicit.grad)
        # A layer under the regularizer, to check what DDP's gradient averaging yields.
        for form in ('fast', 'explicit'):
            W = weight.clone().requires_grad_()
            feats = inputs.chunk(world_size)[rank] @ W.T
            if form == 'fast':
                vcreg_fast(feats, ALPHA, BETA, channel_dim=-1, sync=True).sum().mul(0).backward()
            else:
                vcreg_loss(feats, ALPHA, BETA, channel_dim=-1, sync=True).backward()
            results[f'weight_grad_{form}'] = W.grad
        torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                    reason='needs torch.distributed with the gloo backend')
def test_sync_two_processes_match_the_joined_batch(tmp_path):
    mp.spawn(_ddp_worker, args=(WORLD, _free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(WORLD)]
    cases, inputs, weight = _ddp_cases()

    for name, (x_all, w_all, channel_dim, delta) in cases.items():
        kwargs = dict(alpha=ALPHA, beta=BETA, delta=delta, channel_dim=channel_dim)
        value = direct_vcreg(x_all, ALPHA, BETA, 1e-4, delta, channel_dim)
        joined_grad = autograd_grad(x_all, **kwargs)
        for rank, res in enumerate(ranks):
            res = res[name]
            assert res['loss'].item() == pytest.approx(value, rel=1e-10)
            assert res['fast_value'].item() == pytest.approx(value, rel=1e-10)
            # Each rank back-propagates the sum of all ranks' identical losses:
            # WORLD x the joined-batch gradient of its own rows (see module docs).
            expected = WORLD * joined_grad.chunk(WORLD)[rank]
            assert rel_err(res['loss_grad'], expected) < 1e-6
            assert rel_err(res['fast_grad'] - w_all.chunk(WORLD)[rank], expected) < 1e-6

    # DDP averages parameter gradients over ranks: that average must be the
    # single-process gradient on the joined batch.
    W = weight.clone().requires_grad_()
    vcreg_loss(inputs @ W.T, ALPHA, BETA, channel_dim=-1).backward()
    for form in ('fast', 'explicit'):
        averaged = sum(res[f'weight_grad_{form}'] for res in ranks) / WORLD
        assert rel_err(averaged, W.grad) < 1e-6


# ----------------------------------------------------------------- sampled statistics
@pytest.mark.parametrize('shape,channel_dim,positions', [
    ((3, 4, 6, 5), 1, 30),   # batched layout: spatial positions shared by the batch
    ((3, 7, 5), -1, 21),     # row layout: samples are rows
])
def test_sampled_fast_is_the_exact_gradient_of_the_sampled_subset(shape, channel_dim,
                                                                  positions):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*shape, dtype=torch.float64)
    ratio = 0.4
    torch.manual_seed(7)
    stats = []
    (vcreg_fast(x, 0.5, 2.0, channel_dim=channel_dim, stats=stats, sample_ratio=ratio)
     * w).sum().backward()
    torch.manual_seed(7)  # the same draw, made explicit
    idx = torch.randperm(positions)[:math.ceil(ratio * positions)].sort().values
    x2 = x.detach().clone().requires_grad_(True)
    if channel_dim == 1:
        sub = x2.flatten(2)[:, :, idx]
    else:
        sub = x2.reshape(-1, shape[-1])[idx]
    explicit = vcreg_loss(sub, 0.5, 2.0, channel_dim=1 if channel_dim == 1 else -1)
    explicit.backward()
    torch.testing.assert_close(x.grad, w + x2.grad, rtol=1e-9, atol=1e-12)
    assert stats[0].item() == pytest.approx(explicit.item(), rel=1e-12)
    assert (x2.grad != 0).any(dim=channel_dim).sum() < x2.grad.numel() // shape[channel_dim]


def test_sample_ratio_one_is_exact_and_range_is_checked():
    x = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    g_exact = torch.autograd.grad(vcreg_fast(x, 1.0, 1.0).sum(), x)[0]
    g_one = torch.autograd.grad(vcreg_fast(x, 1.0, 1.0, sample_ratio=1.0).sum(), x)[0]
    assert torch.equal(g_exact, g_one)
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r'\(0, 1\]'):
            vcreg_fast(x, 1.0, 1.0, sample_ratio=bad)

"""Tests of sslreg.losses.sim.

ρSIM is recomputed in float64 with explicit loops over samples, tokens and
channels (numpy, weights read out of the torch modules); each reconstruction
distance is checked against its textbook formula.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

from sslreg.losses import (LOSS_KINDS, gather_tokens, resample_to, rho_sim_block_loss,
                           sample_token_indices, sim_block_loss, sim_reconstruction_loss,
                           standardize, to_tokens)

EPS = 1e-5


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# --------------------------------------------------------------------------- numpy reference


def np_linear(module, v):
    return module.weight.detach().numpy() @ v + module.bias.detach().numpy()


def np_apply(module, v):
    """A Linear or a Sequential of Linear/ReLU on one token vector."""
    layers = module if isinstance(module, nn.Sequential) else [module]
    for layer in layers:
        v = np.maximum(v, 0) if isinstance(layer, nn.ReLU) else np_linear(layer, v)
    return v


def np_standardize(a, eps):
    """a: [sample][token][channel]; biased variance over tokens."""
    N, n, D = a.shape
    out = np.empty_like(a)
    for b in range(N):
        for c in range(D):
            col = [a[b, k, c] for k in range(n)]
            mean = math.fsum(col) / n
            var = math.fsum((v - mean) ** 2 for v in col) / n
            for k in range(n):
                out[b, k, c] = (a[b, k, c] - mean) / math.sqrt(var + eps)
    return out


def np_rho_sim(in_tokens, out_tokens, idx, h1, h2, g, eps=EPS, predictor='after_norm'):
    """in_tokens/out_tokens: numpy [N][L][C]; idx: (n,) shared or (N, n) per sample.
    Eq. 4: t = N(H1(x_S)), p = G(N(H2(y_S))) ('after_norm'; 'before_norm': N(G(H2(y_S))))."""
    N = in_tokens.shape[0]
    idx = np.broadcast_to(idx, (N, idx.shape[-1]))
    t = np_standardize(np.array([[np_apply(h1, in_tokens[b, p]) for p in idx[b]]
                                 for b in range(N)]), eps)
    h = np.array([[np_apply(h2, out_tokens[b, q]) for q in idx[b]] for b in range(N)])
    if predictor == 'after_norm':
        h = np_standardize(h, eps)
        p = np.array([[np_apply(g, h[b, k]) for k in range(h.shape[1])] for b in range(N)])
    else:
        p = np.array([[np_apply(g, h[b, k]) for k in range(h.shape[1])] for b in range(N)])
        p = np_standardize(p, eps)
    return float(np.mean((p - t) ** 2))


def np_map_tokens(x):
    """(N, C, H, W) tensor -> numpy [N][H*W][C], row-major positions."""
    a = x.detach().numpy()
    N, C, H, W = a.shape
    return np.array([[[a[b, c, i, j] for c in range(C)] for i in range(H) for j in range(W)]
                     for b in range(N)])


def np_area_downsample(a, f):
    """numpy (N, C, H, W) averaged over f x f cells."""
    N, C, H, W = a.shape
    out = np.zeros((N, C, H // f, W // f))
    for b in range(N):
        for c in range(C):
            for i in range(H // f):
                for j in range(W // f):
                    out[b, c, i, j] = np.mean(a[b, c, i * f:(i + 1) * f, j * f:(j + 1) * f])
    return out


def heads(c_in, c_out, d=4, hidden=5, seed=0):
    torch.manual_seed(seed)
    h1 = nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, d)).double()
    h2 = nn.Sequential(nn.Linear(c_out, hidden), nn.ReLU(), nn.Linear(hidden, d)).double()
    g = nn.Linear(d, d).double()
    return h1, h2, g


def draw(N, L, rho, per_sample=False, seed=3):
    return sample_token_indices(N, L, rho, per_sample, torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- ρSIM end to end


@pytest.mark.parametrize('per_sample', [False, True], ids=['shared', 'per-sample'])
def test_rho_sim_matches_loop_reference(per_sample, gen):
    z_in = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    z_out = torch.randn(2, 5, 4, 4, generator=gen, dtype=torch.float64)
    h1, h2, g = heads(3, 5)

    loss = rho_sim_block_loss(z_in, z_out, h1, h2, g, rho=0.5, per_sample=per_sample,
                              generator=torch.Generator().manual_seed(3))

    idx = draw(2, 16, 0.5, per_sample).numpy()
    expected = np_rho_sim(np_map_tokens(z_in), np_map_tokens(z_out), idx, h1, h2, g)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_rho_sim_token_layout_matches_reference(gen):
    z_in = torch.randn(2, 9, 3, generator=gen, dtype=torch.float64)
    z_out = torch.randn(2, 9, 5, generator=gen, dtype=torch.float64)
    h1, h2, g = heads(3, 5)
    loss = rho_sim_block_loss(z_in, z_out, h1, h2, g, rho=0.6, channel_dim=-1,
                              generator=torch.Generator().manual_seed(3))
    idx = draw(2, 9, 0.6).numpy()
    assert len(idx) == 5  # round(5.4)
    expected = np_rho_sim(z_in.numpy(), z_out.numpy(), idx, h1, h2, g)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


# Stride 2 is the toy case; at stride 2 bilinear (align_corners=False) also averages
# 2x2 cells, so stride 3 is what tells area averaging from bilinear sampling.
@pytest.mark.parametrize('size_in,stride', [(4, 2), (6, 3)])
def test_strided_block_uses_area_average_of_the_input(size_in, stride, gen):
    z_in = torch.randn(2, 3, size_in, size_in, generator=gen, dtype=torch.float64)
    z_out = torch.randn(2, 5, 2, 2, generator=gen, dtype=torch.float64)
    h1, h2, g = heads(3, 5)
    loss = rho_sim_block_loss(z_in, z_out, h1, h2, g, rho=1.0,
                              generator=torch.Generator().manual_seed(3))
    pooled = torch.from_numpy(np_area_downsample(z_in.numpy(), stride))
    idx = draw(2, 4, 1.0).numpy()
    expected = np_rho_sim(np_map_tokens(pooled), np_map_tokens(z_out), idx, h1, h2, g)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize('L_in,L_out,cls_in,cls_out', [
    (1 + 16, 1 + 4, 1, 1),
    (16, 1 + 4, 0, 1),
    (1 + 16, 4, 1, 0),
])
def test_token_grids_with_cls_tokens(L_in, L_out, cls_in, cls_out, gen):
    z_in = torch.randn(2, L_in, 3, generator=gen, dtype=torch.float64)
    z_out = torch.randn(2, L_out, 5, generator=gen, dtype=torch.float64)
    h1, h2, g = heads(3, 5)
    loss = rho_sim_block_loss(z_in, z_out, h1, h2, g, rho=1.0, channel_dim=-1,
                              generator=torch.Generator().manual_seed(3))
    # Patch tokens only, input grid 4x4 averaged onto the output's 2x2 grid.
    grid = z_in[:, cls_in:].numpy().reshape(2, 4, 4, 3).transpose(0, 3, 1, 2)
    pooled = torch.from_numpy(np_area_downsample(grid, 2))
    idx = draw(2, 4, 1.0).numpy()
    expected = np_rho_sim(np_map_tokens(pooled), z_out[:, cls_out:].numpy(), idx, h1, h2, g)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_equal_token_counts_keep_the_cls_token(gen):
    z_in = torch.randn(2, 1 + 16, 3, generator=gen, dtype=torch.float64)
    z_out = torch.randn(2, 1 + 16, 5, generator=gen, dtype=torch.float64)
    h1, h2, g = heads(3, 5)
    loss = rho_sim_block_loss(z_in, z_out, h1, h2, g, rho=0.5, channel_dim=-1,
                              generator=torch.Generator().manual_seed(3))
    idx = draw(2, 17, 0.5).numpy()
    assert loss.item() == pytest.approx(np_rho_sim(z_in.numpy(), z_out.numpy(), idx, h1, h2, g),
                                        rel=1e-10)


def test_token_counts_without_square_grid_are_rejected():
    h1, h2, g = heads(3, 5)
    with pytest.raises(ValueError, match='neither 15 nor 14 is a perfect square'):
        rho_sim_block_loss(torch.randn(2, 15, 3), torch.randn(2, 4, 5), h1, h2, g, 0.5,
                           channel_dim=-1)


@pytest.mark.parametrize('predictor', ['after_norm', 'before_norm'])
def test_predictor_position_matches_reference(predictor, gen):
    z_in = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    z_out = torch.randn(2, 5, 4, 4, generator=gen, dtype=torch.float64)
    h1, h2, g = heads(3, 5)
    loss = rho_sim_block_loss(z_in, z_out, h1, h2, g, rho=0.5, predictor_position=predictor,
                              generator=torch.Generator().manual_seed(3))
    idx = draw(2, 16, 0.5).numpy()
    expected = np_rho_sim(np_map_tokens(z_in), np_map_tokens(z_out), idx, h1, h2, g,
                          predictor=predictor)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="'after_norm', 'before_norm'"):
        rho_sim_block_loss(z_in, z_out, h1, h2, g, rho=0.5, predictor_position='late')


def test_gradients_reach_output_side_but_not_input_or_target_projector(gen):
    """Eq. 4: sg() covers the whole standardized target, so H1 gets no gradient from
    it (it runs under no_grad: not even a zero gradient, no graph is kept)."""
    z_in = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    z_out = torch.randn(2, 5, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    h1, h2, g = heads(3, 5)
    rho_sim_block_loss(z_in, z_out, h1, h2, g, rho=0.5, generator=gen).backward()
    assert z_in.grad is None
    assert z_out.grad is not None and z_out.grad.abs().sum() > 0
    assert all(p.grad is None for p in h1.parameters())
    assert h2[0].weight.grad.abs().sum() > 0 and g.weight.grad.abs().sum() > 0


def test_only_sampled_tokens_are_projected(gen):
    seen = []

    def recording(width):
        lin = nn.Linear(width, 4).double()

        def f(t):
            seen.append(tuple(t.shape))
            return lin(t)
        return f

    z_in = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    z_out = torch.randn(2, 5, 8, 8, generator=gen, dtype=torch.float64)
    rho_sim_block_loss(z_in, z_out, recording(3), recording(5), recording(4), rho=0.25,
                       generator=gen)
    assert seen == [(2, 16, 3), (2, 16, 5), (2, 16, 4)]


def test_same_seed_same_loss(gen):
    z_in = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    z_out = torch.randn(2, 5, 4, 4, generator=gen, dtype=torch.float64)
    h1, h2, g = heads(3, 5)
    a, b = (rho_sim_block_loss(z_in, z_out, h1, h2, g, 0.5,
                               generator=torch.Generator().manual_seed(9)) for _ in range(2))
    assert a.item() == b.item()


# --------------------------------------------------------------------------- rho and sampling


@pytest.mark.parametrize('rho', [0, 1.5, -0.1, float('nan')])
def test_rho_outside_unit_interval_is_rejected(rho):
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        sample_token_indices(2, 16, rho)
    h1, h2, g = heads(3, 5)
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        rho_sim_block_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4), h1, h2, g, rho)


@pytest.mark.parametrize('L,rho,n', [(16, 0.5, 8), (16, 1.0, 16), (10, 0.01, 2), (9, 0.6, 5),
                                     (10, 0.26, 3), (196, 0.2, 39)])
def test_number_of_sampled_tokens(L, rho, n):
    assert sample_token_indices(3, L, rho).shape == (n,)
    assert sample_token_indices(3, L, rho, per_sample=True).shape == (3, n)


def test_a_single_token_position_is_refused():
    # standardizing one token gives zero: the block would silently train nothing
    with pytest.raises(ValueError, match='at least 2'):
        sample_token_indices(3, 1, 0.5)


def test_shared_and_per_sample_indices(gen):
    shared = sample_token_indices(4, 64, 0.25, generator=gen)
    assert len(set(shared.tolist())) == 16 and 0 <= shared.min() and shared.max() < 64
    per = sample_token_indices(4, 64, 0.25, per_sample=True, generator=gen)
    for row in per.tolist():
        assert len(set(row)) == 16 and all(0 <= i < 64 for i in row)
    assert len({tuple(sorted(row)) for row in per.tolist()}) == 4, 'samples should differ'


def test_gather_tokens_both_index_shapes(gen):
    tokens = torch.randn(3, 10, 4, generator=gen)
    shared = torch.tensor([7, 2, 5])
    got = gather_tokens(tokens, shared)
    for b in range(3):
        for k, p in enumerate(shared.tolist()):
            assert torch.equal(got[b, k], tokens[b, p])
    per = torch.tensor([[0, 9], [3, 3], [8, 1]])
    got = gather_tokens(tokens, per)
    for b in range(3):
        for k in range(2):
            assert torch.equal(got[b, k], tokens[b, per[b, k]])
    with pytest.raises(ValueError):
        gather_tokens(tokens, torch.zeros(2, 2, dtype=torch.long))


def test_to_tokens_layouts(gen):
    x = torch.randn(2, 3, 4, 5, generator=gen)
    t = to_tokens(x, 1)
    assert t.shape == (2, 20, 3)
    assert torch.equal(t[1, 2 * 5 + 3], x[1, :, 2, 3])
    assert t.data_ptr() == x.data_ptr()  # a view: no full transposed copy
    tokens = torch.randn(2, 7, 3, generator=gen)
    assert to_tokens(tokens, -1) is tokens
    with pytest.raises(ValueError):
        to_tokens(tokens, 1)


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize('size_in,stride', [(4, 2), (6, 3), (8, 4)])
def test_resample_integer_downsampling_is_area_average(size_in, stride, gen):
    x = torch.randn(2, 3, size_in, size_in, generator=gen, dtype=torch.float64)
    got = resample_to(x, (size_in // stride, size_in // stride))
    assert np.allclose(got.numpy(), np_area_downsample(x.numpy(), stride), rtol=0, atol=1e-14)
    assert resample_to(x, (size_in, size_in)) is x


def test_resample_mixed_integer_factors(gen):
    x = torch.randn(1, 2, 6, 4, generator=gen, dtype=torch.float64)
    got = resample_to(x, (2, 2)).numpy()  # 3x2 cells
    for i in range(2):
        for j in range(2):
            cell = x.numpy()[:, :, 3 * i:3 * i + 3, 2 * j:2 * j + 2]
            assert np.allclose(got[:, :, i, j], cell.mean(axis=(2, 3)), atol=1e-14)


def np_bilinear(a, h, w):
    """align_corners=False: output pixel centres mapped into input pixel centres."""
    N, C, H, W = a.shape

    def taps(i, size_in, size_out):
        src = max((i + 0.5) * size_in / size_out - 0.5, 0.0)
        i0 = min(int(math.floor(src)), size_in - 1)
        return i0, min(i0 + 1, size_in - 1), src - i0

    out = np.zeros((N, C, h, w))
    for i in range(h):
        y0, y1, ly = taps(i, H, h)
        for j in range(w):
            x0, x1, lx = taps(j, W, w)
            out[:, :, i, j] = ((1 - ly) * ((1 - lx) * a[:, :, y0, x0] + lx * a[:, :, y0, x1]) +
                               ly * ((1 - lx) * a[:, :, y1, x0] + lx * a[:, :, y1, x1]))
    return out


@pytest.mark.parametrize('size', [(3, 3), (6, 8), (2, 3)])
def test_resample_other_sizes_is_bilinear(size, gen):
    x = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    got = resample_to(x, size)
    assert np.allclose(got.numpy(), np_bilinear(x.numpy(), *size), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- standardize and distances


def test_standardize_zero_mean_unit_variance(gen):
    z = 3 + 2 * torch.randn(3, 12, 5, generator=gen, dtype=torch.float64)
    s = standardize(z, eps=1e-12)
    assert torch.allclose(s.mean(dim=1), torch.zeros(3, 5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(s.var(dim=1, unbiased=False), torch.ones(3, 5, dtype=torch.float64),
                          atol=1e-10)
    # eps enters as sqrt(var + eps), the biased variance over tokens.
    assert np.allclose(standardize(z, 0.5).numpy(), np_standardize(z.numpy(), 0.5), atol=1e-14)


def test_standardize_single_token_is_zero(gen):
    assert torch.equal(standardize(torch.randn(2, 1, 4, generator=gen)), torch.zeros(2, 1, 4))


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def np_distance(kind, p, t):
    """Direct formulas over [sample][token][channel] arrays."""
    tokens = [(p[b, k], t[b, k]) for b in range(p.shape[0]) for k in range(p.shape[1])]
    diff = p - t
    if kind == 'mse':
        return np.mean(diff ** 2)
    if kind == 'l1':
        return np.mean(np.abs(diff))
    if kind == 'smooth_l1':
        return np.mean(np.where(np.abs(diff) < 1, 0.5 * diff ** 2, np.abs(diff) - 0.5))
    if kind == 'l2':
        return np.mean([math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v))) for u, v in tokens])
    if kind == 'cos':
        return np.mean([1 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v)) for u, v in tokens])
    if kind == 'wasserstein':  # squared W2 per (sample, channel): sorted values
        return np.mean([np.mean((np.sort(p[b, :, c]) - np.sort(t[b, :, c])) ** 2)
                        for b in range(p.shape[0]) for c in range(p.shape[2])])
    if kind == 'kl':  # KL(softmax(target) || softmax(pred))
        return np.mean([sum(q * (math.log(q) - math.log(r))
                            for q, r in zip(_softmax(v), _softmax(u))) for u, v in tokens])
    raise AssertionError(kind)


@pytest.mark.parametrize('kind', ['mse', 'l2', 'l1', 'smooth_l1', 'cos', 'kl', 'wasserstein'])
def test_distance_kinds_match_direct_formulas(kind, gen):
    pred = 1.5 * torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    target = 1.5 * torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    got = sim_reconstruction_loss(pred, target, kind)
    assert got.item() == pytest.approx(np_distance(kind, pred.numpy(), target.numpy()), rel=1e-10)


def test_kinds_constant_and_unknown_kind():
    assert set(LOSS_KINDS) == {'mse', 'l2', 'l1', 'smooth_l1', 'cos', 'kl', 'wasserstein'}
    with pytest.raises(ValueError) as info:
        sim_reconstruction_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), 'huber')
    for kind in LOSS_KINDS:
        assert repr(kind) in str(info.value)


def test_target_is_not_detached_by_the_distance(gen):
    pred = torch.randn(2, 5, 4, generator=gen, requires_grad=True)
    target = torch.randn(2, 5, 4, generator=gen, requires_grad=True)
    sim_reconstruction_loss(pred, target, 'mse').backward()
    assert target.grad is not None and target.grad.abs().sum() > 0


def test_l2_gradient_is_finite_at_zero_distance():
    pred = torch.zeros(1, 3, 4, requires_grad=True)
    sim_reconstruction_loss(pred, torch.zeros(1, 3, 4), 'l2').backward()
    assert torch.isfinite(pred.grad).all()


# --------------------------------------------------------------------------- SIM (unsampled)


def test_sim_block_loss_reconstructs_the_pooled_input(gen):
    z_in = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    z_out = torch.randn(2, 5, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    decoder = nn.Linear(5, 3).double()
    loss = sim_block_loss(z_in, z_out, decoder, channel_dim=1, kind='mse')
    target = np_map_tokens(torch.from_numpy(np_area_downsample(z_in.detach().numpy(), 2)))
    out_tokens = np_map_tokens(z_out)
    recon = np.array([[np_linear(decoder, out_tokens[b, k]) for k in range(4)] for b in range(2)])
    assert loss.item() == pytest.approx(float(np.mean((recon - target) ** 2)), rel=1e-10)
    loss.backward()
    assert z_in.grad is None and decoder.weight.grad is not None and z_out.grad is not None

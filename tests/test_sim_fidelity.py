"""ρSIM as its paper defines it (Eq. 1, 4) and as the authors' code computes it.

* the stop-gradient covers the whole standardized target: H1 gets no gradient from it;
* the loss tells a block that destroys information from an invertible one;
* ``preset='authors_code'`` equals a direct re-implementation of SIM-pytorch's formula.
"""
import math

import pytest
import torch
from torch import nn

from sslreg.losses.sim import rho_sim_block_loss
from sslreg.regularizers import RhoSIM, collecting, pop_terms, probing
from sslreg.regularizers.sim import PRESETS, RhoSIMHead


def attach(model, probe, **options):
    reg = RhoSIM(**options)
    reg.attach(model)
    with probing([reg]):
        model(probe)
    return reg


def sim_loss(model, reg, x):
    with collecting([reg]):
        model(x)
    return pop_terms({'sim': reg})['loss_sim']


# ------------------------------------------------------------------ stop-gradient


def test_shared_projector_learns_through_the_prediction_branch_only():
    """H1 = H2 = P: P's gradient is that of the prediction branch with the target held
    fixed (computed here by hand with an explicitly detached target)."""
    torch.manual_seed(0)
    head = RhoSIMHead(6, 6, 4, 8, 'shared').double()
    z_in = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    z_out = torch.randn(2, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    loss = rho_sim_block_loss(z_in, z_out, head.target, head.output, head.predictor, 0.4,
                              generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad(loss, list(head.proj.parameters()))

    idx = torch.randperm(25, generator=torch.Generator().manual_seed(1))[:10]
    t_in = z_in.flatten(2).transpose(1, 2)[:, idx]
    t_out = z_out.flatten(2).transpose(1, 2)[:, idx]

    def std(z):
        var, mean = torch.var_mean(z, dim=1, correction=0, keepdim=True)
        return (z - mean) / torch.sqrt(var + 1e-5)

    target = std(head.proj(t_in)).detach()
    pred = head.predictor(std(head.proj(t_out)))
    expected = torch.autograd.grad(((pred - target) ** 2).mean(), list(head.proj.parameters()),
                                   retain_graph=True)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, rtol=1e-10, atol=1e-14)
    assert got[0].abs().sum() > 0
    # ... and it differs from the gradient a target trained through the target would get.
    through = std(head.proj(t_in))
    both = torch.autograd.grad(((pred - through) ** 2).mean(), list(head.proj.parameters()))
    assert not torch.allclose(both[0], got[0])


def test_separate_target_projector_is_fixed_and_gets_no_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 32, 3, padding=1))
    reg = attach(model, torch.randn(1, 3, 8, 8), layers='1', rho=0.5)  # preset 'paper'
    head = reg.heads['1']
    assert head.head == 'separate'
    assert all(not p.requires_grad for p in head.target_proj.parameters())
    sim_loss(model, reg, torch.randn(2, 3, 8, 8)).backward()
    assert all(p.grad is None for p in head.target_proj.parameters())
    assert head.output_proj[0].weight.grad.abs().sum() > 0
    assert head.predictor.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------ information toy


class FixedBlockToy(nn.Module):
    """One fixed linear block on 32-channel tokens: invertible (orthogonal) or keeping
    4 of 32 directions (a rank-4 projection)."""

    def __init__(self, keep: int, seed: int, channels: int = 32):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels,
                                           generator=torch.Generator().manual_seed(seed)))
        self.block = nn.Linear(channels, channels, bias=False).requires_grad_(False)
        self.block.weight.copy_((q[:, :keep] @ q[:, :keep].T).T if keep < channels else q.T)

    def forward(self, x):
        return self.block(x)


def trained_loss(keep: int, seed: int, steps: int = 400) -> float:
    """ρSIM at its defaults with only the heads training on a fixed block; the mean loss
    of the last 50 steps (divided by λ)."""
    torch.manual_seed(seed)
    model = FixedBlockToy(keep, seed)
    reg = attach(model, torch.randn(1, 64, 32), layers='block')
    opt = torch.optim.Adam([p for p in reg.parameters() if p.requires_grad], lr=1e-2)
    data = torch.Generator().manual_seed(100 + seed)
    tail = []
    for step in range(steps):
        loss = sim_loss(model, reg, torch.randn(16, 64, 32, generator=data)) / reg.loss_weight
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= steps - 50:
            tail.append(loss.item())
    return sum(tail) / len(tail)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_loss_separates_an_information_destroying_block_from_an_invertible_one(seed):
    """A block that discards 28 of 32 input directions leaves its input unpredictable;
    an invertible one does not. With the target under stop-gradient the trained heads
    cannot make the target easy instead (the old, wrong form measured 1.25x here)."""
    invertible, destroying = trained_loss(32, seed), trained_loss(4, seed)
    assert destroying / invertible >= 3, (invertible, destroying)


# ------------------------------------------------------------------ authors' code preset


class TwoBlocks(nn.Module):
    """Blocks that keep the token count (as SIM-pytorch requires); block 1 widens."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.b0 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.b1(self.b0(self.stem(x)))


def authors_block_loss(x, y, proj, pre_proj, predictor, ratio, lam):
    """SIM-pytorch's per-block term, from its description: tokens (B, N, C), one random
    permutation of the N positions, the first int(ratio * N); target = proj(x) under
    no_grad; prediction = predictor(proj(pre_proj(y))); both standardized over the tokens
    with the unbiased std and 1e-6 added to it; the L2 norm over channels, averaged over
    samples and tokens; times lambda."""
    x = x.detach().flatten(2).transpose(1, 2)
    y = y.flatten(2).transpose(1, 2)
    keep = torch.randperm(x.shape[1])[:int(ratio * x.shape[1])]
    x, y = x[:, keep], y[:, keep]
    with torch.no_grad():
        zx = proj(x)
    zy = predictor(proj(pre_proj(y)))

    def standardized(z):
        return (z - z.mean(dim=1, keepdim=True)) / (z.std(dim=1, keepdim=True) + 1e-6)

    return lam * (standardized(zy) - standardized(zx)).norm(p=2, dim=-1).mean()


def test_authors_code_preset_equals_a_direct_reimplementation():
    torch.manual_seed(0)
    model = TwoBlocks().double()
    reg = attach(model, torch.randn(1, 3, 6, 6, dtype=torch.float64), layers=['b0', 'b1'],
                 rho=0.3, preset='authors_code', loss_weight=5e-3).double()
    assert reg.heads['b0'].proj[0].out_features == 256  # K = 128, hidden 2K
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    params = [p for p in list(model.parameters()) + list(reg.parameters())]

    torch.manual_seed(7)
    ours = sim_loss(model, reg, x)
    ours_grads = torch.autograd.grad(ours, params, allow_unused=True)

    seen = {}
    hooks = [getattr(model, n).register_forward_hook(
        lambda m, a, o, n=n: seen.__setitem__(n, (a[0], o))) for n in ('b0', 'b1')]
    torch.manual_seed(7)  # the same permutations, block by block in forward order
    model(x)
    for h in hooks:
        h.remove()
    # b1 is called after b0, so the two permutations are drawn in that order here too
    terms = []
    for name in ('b0', 'b1'):
        head = reg.heads[name]
        terms.append(authors_block_loss(*seen[name], head.proj, head.pre_proj, head.predictor,
                                        0.3, 5e-3))
    theirs = sum(terms) / len(terms)  # compute_loss_sim: the mean over blocks
    theirs_grads = torch.autograd.grad(theirs, params, allow_unused=True)

    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    for a, b in zip(ours_grads, theirs_grads):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-12)
    assert isinstance(reg.heads['b1'].pre_proj, nn.Linear)
    assert reg.heads['b1'].pre_proj.bias is None
    assert isinstance(reg.heads['b0'].pre_proj, nn.Identity)


def test_authors_code_token_count_floor_is_a_clear_error_naming_the_layer():
    model = TwoBlocks()
    reg = attach(model, torch.randn(1, 3, 3, 3), layers='b1', rho=0.2, preset='authors_code')
    with pytest.raises(ValueError, match=r"layer 'b1'.*int\(0.2 \* 9\) = 1"):
        sim_loss(model, reg, torch.randn(2, 3, 3, 3))


# ------------------------------------------------------------------ options


def test_presets_and_explicit_options():
    assert RhoSIM().kind == 'mse' and RhoSIM().reduction == 'sum'
    reg = RhoSIM(preset='authors_code', kind='mse', head='separate')
    assert (reg.kind, reg.head, reg.reduction, reg.count) == ('mse', 'separate', 'mean', 'floor')
    with pytest.raises(ValueError, match="'paper', 'authors_code'"):
        RhoSIM(preset='official')
    with pytest.raises(ValueError, match="'separate', 'shared'"):
        RhoSIM(head='tied')
    with pytest.raises(ValueError, match="'sqrt'"):
        RhoSIM(dim='log')
    assert set(PRESETS) == {'paper', 'authors_code'}


@pytest.mark.parametrize('head', ['separate', 'shared'])
def test_sqrt_widths(head):
    model = nn.Sequential(nn.Conv2d(3, 64, 1), nn.Conv2d(64, 256, 1))
    reg = attach(model, torch.randn(1, 3, 4, 4), layers='1', head=head)
    h = reg.heads['1']
    first = h.proj[0] if head == 'shared' else h.target_proj[0]
    assert (first.in_features, first.out_features) == (64, 16)  # K = 8, hidden 2K
    assert (h.predictor.in_features, h.predictor.out_features) == (8, 8)
    if head == 'shared':
        assert (h.pre_proj.in_features, h.pre_proj.out_features) == (256, 64)
    else:
        assert h.output_proj[0].in_features == 256


def test_checkpoint_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    model = TwoBlocks().double()
    reg = attach(model, torch.randn(1, 3, 6, 6, dtype=torch.float64), layers=['b0', 'b1'],
                 rho=0.5, dim=6).double()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    params = [p for p in list(model.parameters()) + list(reg.parameters()) if p.requires_grad]
    results = []
    for checkpoint in (False, True):
        reg.checkpoint = checkpoint
        torch.manual_seed(3)
        loss = sim_loss(model, reg, x)
        results.append((loss.detach(), torch.autograd.grad(loss, params)))
    (l0, g0), (l1, g1) = results
    assert torch.equal(l0, l1)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)


def test_unnormalized_variant_is_the_plain_distance_of_the_projections():
    torch.manual_seed(0)
    head = RhoSIMHead(3, 5, 4, 6).double()
    z_in = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    z_out = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    loss = rho_sim_block_loss(z_in, z_out, head.target, head.output, head.predictor, 1.0,
                              normalize=False, kind='l1')
    t_in = z_in.flatten(2).transpose(1, 2)
    t_out = z_out.flatten(2).transpose(1, 2)
    # rho = 1 samples every position (in a random order, the same on both sides)
    expected = (head.predictor(head.output(t_out)) - head.target(t_in)).abs().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_parameter_count_of_the_paper_heads_matches_a_closed_form():
    """dim='sqrt', separate heads, a block C_in -> C_out: two MLPs c -> 2K -> K -> K and
    G = K -> K, with K = isqrt(C_in)."""
    def mlp(c, k):
        return c * 2 * k + 2 * k + 2 * k * k + k + k * k + k

    for c_in, c_out in [(64, 256), (256, 256), (1024, 2048)]:
        k = math.isqrt(c_in)
        head = RhoSIMHead(c_in, c_out, k, 2 * k, 'separate')
        assert sum(p.numel() for p in head.parameters()) == mlp(c_in, k) + mlp(c_out, k) + k * k + k

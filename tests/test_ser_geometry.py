"""SER's group (sslreg.geometry): group law, exact rot/flip action, direction pinned,
and the image / token-map actions agreeing for a patch-wise network."""
import itertools
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslreg import geometry as G

D4 = list(G.ELEMENTS_D4)
SCALED = [G.GroupElement(r, f, (0.75, 1.25)) for r in range(4) for f in (False, True)]


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


def _close(a: G.GroupElement, b: G.GroupElement) -> bool:
    return (a.rot, a.flip) == (b.rot, b.flip) and all(
        abs(x - y) < 1e-12 for x, y in zip(a.scale, b.scale))


@pytest.mark.parametrize('g', D4 + SCALED, ids=str)
def test_inverse_is_two_sided(g):
    assert _close(G.compose(g, G.inverse(g)), G.IDENTITY)
    assert _close(G.compose(G.inverse(g), g), G.IDENTITY)


def test_composition_is_associative_and_relative_recovers_g2():
    rng = random.Random(0)
    elems = [G.sample_element(rng=rng) for _ in range(6)]
    for a, b, c in itertools.permutations(elems, 3):
        assert _close(G.compose(a, G.compose(b, c)), G.compose(G.compose(a, b), c))
        assert _close(G.compose(G.relative(a, b), a), b)  # g_rel g1 = g2


def test_d4_action_is_exact_and_a_homomorphism():
    x = torch.randn(2, 3, 5, 5)
    for g1, g2 in itertools.product(D4, D4):
        lhs = G.act(G.act(x, g1), g2)
        assert torch.equal(lhs, G.act(x, G.compose(g2, g1)))
    for g in D4:
        assert torch.equal(G.act(G.act(x, g), G.inverse(g)), x)  # g^-1 g = id, exactly


def test_scaled_element_and_inverse_restore_the_size_and_compose_symbolically():
    x = torch.randn(1, 4, 14, 14)
    for g in SCALED:
        y = G.act(x, g, out_size=None)
        h, w = round(14 * 0.75), round(14 * 1.25)
        assert y.shape[-2:] == ((w, h) if g.swaps_axes else (h, w))
        back = G.act(y, G.inverse(g), out_size=x.shape[-2:])
        assert back.shape == x.shape
        # g^-1 g is the identity element: its action (no resampling) is exact
        assert torch.equal(G.act(x, G.compose(G.inverse(g), g)), x)


def test_image_sizes_stay_on_the_patch_grid_and_match_token_grid():
    img = torch.randn(1, 3, 64, 48)
    for g in SCALED:
        y = G.act(img, g, unit=16)
        assert y.shape[-2] % 16 == 0 and y.shape[-1] % 16 == 0
        assert tuple(s // 16 for s in y.shape[-2:]) == G.act_size((4, 3), g, unit=1)


def test_rot90_direction_of_image_and_token_grid_agree():
    """An image that is bright in patch (0, 1) only: after rot90 of the image, the bright
    patch is where rot90 of the token grid puts token (0, 1)."""
    p = 4
    img = torch.zeros(1, 1, 3 * p, 3 * p)
    img[..., 0:p, p:2 * p] = 1.0
    grid = torch.zeros(1, 1, 3, 3)
    grid[..., 0, 1] = 1.0
    for g in D4:
        patch_means = F.avg_pool2d(G.act(img, g, unit=p), p)
        assert torch.equal(patch_means, G.act(grid, g))
    # and it is counter-clockwise as displayed (row 0 on top): (0, 1) -> (1, 0)
    assert G.act(grid, G.GroupElement(rot=1))[0, 0, 1, 0] == 1


class PatchwiseNet(nn.Module):
    """A ViT stem without positional terms: a patch embedding whose kernel is symmetric
    under D4 (so each patch's embedding does not depend on the patch's orientation),
    then a per-token MLP. It commutes with rot/flip exactly (up to float summation
    order)."""

    def __init__(self, p=4, c=8):
        super().__init__()
        w = torch.randn(c, 3, p, p)
        w = sum(G.act(w, g) for g in D4) / 8  # D4-invariant kernel
        self.embed = nn.Conv2d(3, c, p, stride=p)
        self.embed.weight.data.copy_(w)
        self.mlp = nn.Sequential(nn.Conv2d(c, 16, 1), nn.GELU(), nn.Conv2d(16, c, 1))

    def forward(self, x):
        return self.mlp(self.embed(x))


def test_patchwise_network_commutes_with_rot_and_flip():
    torch.manual_seed(0)
    net = PatchwiseNet()
    x = torch.randn(2, 3, 20, 12)
    fx = net(x)
    for g in D4:
        torch.testing.assert_close(net(G.act(x, g, unit=4)), G.act(fx, g), rtol=1e-5, atol=1e-5)
    # the relative transform of two views maps view 1's map onto view 2's
    f = {g: net(G.act(x, g, unit=4)) for g in D4}
    for g1, g2 in itertools.product(D4, D4):
        torch.testing.assert_close(G.act(f[g1], G.relative(g1, g2)), f[g2], rtol=1e-5,
                                   atol=1e-5)


def test_token_scaling_uses_the_image_kernel():
    """For a linear patch-averaging stem, rescaling the image by whole patches and
    rescaling its token map are both bilinear resampling of the same continuous
    picture: a smooth (linear) image gives identical results."""
    yy, xx = torch.meshgrid(torch.arange(32.), torch.arange(32.), indexing='ij')
    img = (0.3 * yy + 0.7 * xx)[None, None]  # a plane: bilinear reproduces it exactly
    g = G.GroupElement(scale=(1.5, 0.5))
    tokens = F.avg_pool2d(img, 4)
    via_image = F.avg_pool2d(G.act(img, g, unit=4), 4)
    via_tokens = G.act(tokens, g)
    assert via_image.shape == via_tokens.shape == (1, 1, 12, 4)
    # away from the border (where resampling clamps), the two agree
    torch.testing.assert_close(via_image[..., 1:-1, 1:-1], via_tokens[..., 1:-1, 1:-1],
                               rtol=0, atol=1e-4)


def test_sample_element_ranges_and_serialization():
    rng = random.Random(1)
    for _ in range(200):
        g = G.sample_element((0.7, 1.3), (3 / 4, 4 / 3), rng=rng)
        area = g.scale[0] * g.scale[1]
        assert 0.7 - 1e-9 <= area <= 1.3 + 1e-9
        assert 3 / 4 - 1e-9 <= g.scale[1] / g.scale[0] <= 4 / 3 + 1e-9
        assert G.GroupElement.from_tuple(g.to_tuple()) == g
    with pytest.raises(ValueError):
        G.GroupElement(scale=(0, 1))

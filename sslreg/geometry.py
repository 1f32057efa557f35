r"""The invertible geometric group of SER and its action on images and token maps.

Lee, Kim, Kim, Lee, Lee, "Soft Equivariance Regularization for Invariant
Self-Supervised Learning" (ICLR 2026, arXiv:2603.06693): SER asks an intermediate
ViT token map :math:`f(x)` to satisfy :math:`f(g\cdot x) \approx \rho_g f(x)` for an
analytically known action :math:`\rho_g` on the token lattice.

The group
---------
:math:`G = D_4 \ltimes (\mathbb{R}_{>0})^2`: the eight symmetries of the square
lattice (rotations by multiples of 90 degrees, horizontal flip) and anisotropic
scalings. An element is ``g = (rot, flip, scale)`` and acts as

.. math::

    g\cdot x = R^{rot}\, F^{flip}\, S_{(s_h, s_w)}\, x

(first scale, then flip, then rotate), with

* :math:`S_{(s_h, s_w)}`: resize to ``(u * round(H/u * s_h), u * round(W/u * s_w))``
  where ``u`` is the lattice unit (the patch size for images, 1 for token maps), so a
  rescaled image stays on the patch grid and its token map is exactly the rescaled
  token grid. Resampling is ``F.interpolate(mode, align_corners=False)``, bilinear by
  default, the **same kernel for images and token maps**: with
  ``align_corners=False`` both map the extent of the input onto the extent of the
  output, so a token centre (pixel ``u*i + (u-1)/2``) lands where the image content
  under it lands. (The authors' released code resizes with bicubic; pass
  ``mode='bicubic'`` for that.)
* :math:`F`: horizontal flip (``x.flip(-1)``), an exact permutation.
* :math:`R`: ``torch.rot90(x, 1, dims=(-2, -1))``, i.e. counter-clockwise as
  displayed with row 0 at the top, an exact permutation. The **same call** rotates
  images and token grids: for an image whose sides are multiples of the patch size,
  rotating the image by 90 degrees moves patch ``(i, j)`` exactly where ``rot90``
  moves token ``(i, j)`` (and rotates the content of the patch); ``tests/test_ser_geometry.py``
  pins the direction.

Group law (derived from :math:`F R F = R^{-1}` and :math:`D^{-1} S_{(a,b)} D =
S_{(b,a)}` for an odd rotation :math:`D`, :math:`S_{(a,b)}` otherwise):

.. math::

    g_2 g_1 = \bigl(rot_2 + (-1)^{flip_2} rot_1,\ flip_1 \oplus flip_2,\
              \sigma_{rot_1}(s_2) \odot s_1\bigr), \qquad
    g^{-1} = \bigl(D^{-1},\ \sigma_{rot}(1/s)\bigr)

with :math:`\sigma_{r}` swapping ``(s_h, s_w)`` when ``r`` is odd. The relative
transform of two views :math:`x_1 = g_1 x,\ x_2 = g_2 x` is
:math:`g_{rel} = g_2 g_1^{-1}`, so :math:`x_2 = g_{rel}\, x_1` (exactly for the
:math:`D_4` part, up to resampling for the scale).

Realised sizes. Rounding to the lattice makes ``round(round(h*s1) * s2/s1)`` differ
from ``round(h*s2)`` by one now and then; :func:`act` therefore takes ``out_size``,
the size the result must have (e.g. view 2's token grid), and resamples to exactly
that. This is how SER maps view 1's token map onto view 2's lattice.

Pure torch; no OpenMMLab import.
"""
import math
import random
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ['GroupElement', 'IDENTITY', 'compose', 'inverse', 'relative', 'act', 'act_size',
           'act_each', 'sample_element', 'ELEMENTS_D4']

_SIZE_MODES = ('nearest', 'nearest-exact', 'bilinear', 'bicubic', 'area')


@dataclass(frozen=True)
class GroupElement:
    """``g = R^rot F^flip S_scale`` (scale first). ``scale = (s_h, s_w)``."""
    rot: int = 0
    flip: bool = False
    scale: Tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        object.__setattr__(self, 'rot', int(self.rot) % 4)
        object.__setattr__(self, 'flip', bool(self.flip))
        s_h, s_w = (float(s) for s in self.scale)
        if not (s_h > 0 and s_w > 0):
            raise ValueError(f'scale factors must be > 0, got {self.scale}')
        object.__setattr__(self, 'scale', (s_h, s_w))

    # serialization for data-sample metainfo (plain tuples collate and pickle well)
    def to_tuple(self) -> Tuple[int, int, float, float]:
        return (self.rot, int(self.flip), self.scale[0], self.scale[1])

    @classmethod
    def from_tuple(cls, t: Sequence) -> 'GroupElement':
        if isinstance(t, GroupElement):
            return t
        if torch.is_tensor(t):
            t = t.tolist()
        rot, flip, s_h, s_w = t
        return cls(int(rot), bool(flip), (float(s_h), float(s_w)))

    @property
    def swaps_axes(self) -> bool:
        return self.rot % 2 == 1

    @property
    def is_d4(self) -> bool:
        return self.scale == (1.0, 1.0)

    def __matmul__(self, other: 'GroupElement') -> 'GroupElement':
        """``g2 @ g1`` is :func:`compose` ``(g2, g1)``: g1 first."""
        return compose(self, other)


IDENTITY = GroupElement()
ELEMENTS_D4 = tuple(GroupElement(r, f) for f in (False, True) for r in range(4))


def _swap(s: Tuple[float, float], odd: bool) -> Tuple[float, float]:
    return (s[1], s[0]) if odd else s


def compose(g2: GroupElement, g1: GroupElement) -> GroupElement:
    """``g2 g1``: apply ``g1`` first, then ``g2``."""
    sign = -1 if g2.flip else 1
    s2 = _swap(g2.scale, g1.swaps_axes)
    return GroupElement(g2.rot + sign * g1.rot, g1.flip ^ g2.flip,
                        (s2[0] * g1.scale[0], s2[1] * g1.scale[1]))


def inverse(g: GroupElement) -> GroupElement:
    rot = g.rot if g.flip else -g.rot  # reflections R^r F are involutions
    inv_s = _swap((1.0 / g.scale[0], 1.0 / g.scale[1]), g.swaps_axes)
    return GroupElement(rot, g.flip, inv_s)


def relative(g1: GroupElement, g2: GroupElement) -> GroupElement:
    """:math:`g_{rel} = g_2 g_1^{-1}`, so that ``x2 = g_rel . x1``."""
    return compose(g2, inverse(g1))


def _round_to(n: int, s: float, unit: int) -> int:
    return unit * max(1, int(round(n / unit * s)))


def act_size(size: Tuple[int, int], g: GroupElement, unit: int = 1) -> Tuple[int, int]:
    """The spatial size of ``g . x`` for ``x`` of ``size`` (H, W)."""
    h, w = size
    h2, w2 = _round_to(h, g.scale[0], unit), _round_to(w, g.scale[1], unit)
    return (w2, h2) if g.swaps_axes else (h2, w2)


def _resize(x: torch.Tensor, size: Tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x  # interpolate to the same size with align_corners=False is the identity
    if mode not in _SIZE_MODES:
        raise ValueError(f'mode must be one of {_SIZE_MODES}, got {mode!r}')
    lead = x.shape[:-3]
    y = x.reshape(-1, *x.shape[-3:]) if x.dim() != 4 else x
    kwargs = dict(align_corners=False) if mode in ('bilinear', 'bicubic') else {}
    y = F.interpolate(y, size=tuple(size), mode=mode, **kwargs)
    return y.reshape(*lead, *y.shape[-3:]) if x.dim() != 4 else y


def act(x: torch.Tensor, g: GroupElement, unit: int = 1, out_size: Optional[Sequence[int]] = None,
        mode: str = 'bilinear') -> torch.Tensor:
    """``g . x`` for ``x`` of shape ``(..., C, H, W)`` (images or token maps).

    Args:
        x: at least 3-d, spatial axes last.
        g: the group element.
        unit: the lattice unit (patch size for images, 1 for token maps); the
            rescaled size is a multiple of it.
        out_size: the required output size (after the rotation); overrides the
            size the scale would give (see the module docstring).
        mode: interpolation kernel of the scaling (``align_corners=False``).
    """
    if x.dim() < 3:
        raise ValueError(f'act needs (..., C, H, W), got shape {tuple(x.shape)}')
    if out_size is not None:
        target = tuple(int(s) for s in out_size)
        target = (target[1], target[0]) if g.swaps_axes else target
    else:
        h2, w2 = act_size(tuple(x.shape[-2:]), g, unit)
        target = (w2, h2) if g.swaps_axes else (h2, w2)
    x = _resize(x, target, mode)
    if g.flip:
        x = x.flip(-1)
    if g.rot:
        x = torch.rot90(x, g.rot, dims=(-2, -1))
    return x


def sample_element(scale_range: Tuple[float, float] = (0.7, 1.3),
                   ratio_range: Tuple[float, float] = (3 / 4, 4 / 3),
                   rotations: Sequence[int] = (0, 1, 2, 3), flip_prob: float = 0.5,
                   rng: Optional[random.Random] = None) -> GroupElement:
    """A random element: uniform rotation from ``rotations``, flip with ``flip_prob``,
    and an anisotropic scale whose **area** factor is uniform in ``scale_range`` and
    whose aspect ratio is log-uniform in ``ratio_range`` (``s_h = sqrt(a / r)``,
    ``s_w = sqrt(a * r)``), as the authors' released sampler (``Aug_equi.get_params``:
    target area ``196 * U(0.7, 1.3)`` tokens, ratio in (3/4, 4/3)). Pass
    ``scale_range=(1, 1), ratio_range=(1, 1)`` for D4 only."""
    rng = rng or random
    area = rng.uniform(*scale_range)
    log_r = rng.uniform(math.log(ratio_range[0]), math.log(ratio_range[1]))
    r = math.exp(log_r)
    rot = rng.choice(list(rotations)) if rotations else 0
    flip = rng.random() < flip_prob
    return GroupElement(rot, flip, (math.sqrt(area / r), math.sqrt(area * r)))


def act_each(xs: Sequence[torch.Tensor], gs: Sequence[GroupElement], unit: int = 1,
             out_sizes: Optional[Sequence[Sequence[int]]] = None,
             mode: str = 'bilinear') -> List[torch.Tensor]:
    """:func:`act` per sample: ``xs[i]`` (C, H, W) by ``gs[i]``; a list (sizes may differ)."""
    if len(xs) != len(gs):
        raise ValueError(f'{len(xs)} tensors but {len(gs)} group elements')
    out_sizes = out_sizes if out_sizes is not None else [None] * len(xs)
    return [act(x, g, unit, o, mode) for x, g, o in zip(xs, gs, out_sizes)]

r"""CompMod, MCR's fusion module, and the tap that hands it the two views' features.

:class:`CompMod` fuses the two views' pooled backbone features ``h1, h2`` (``'concat'``,
``'mixup'``) or their projections ``z1, z2`` (``'embedding'``) through :math:`g_\xi`
(:math:`g_\zeta`); see :mod:`sslreg.models.mcr` for the method. :class:`ViewTap` (a
:class:`~sslreg.regularizers.taps.LayerRecorder`) records the backbone and neck outputs
of an SSL algorithm's forward and splits them into those four tensors.
"""
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..regularizers.taps import LayerRecorder, Record

FUSIONS = ('concat', 'mixup', 'embedding')


def _linear_stack(in_channels: int, hid_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_channels, hid_channels), nn.ReLU(inplace=True),
                         nn.Linear(hid_channels, out_channels))


class CompMod(nn.Module):
    r"""Fusion of two views and the fusion network (:math:`g_\xi` or :math:`g_\zeta`).

    Args:
        in_channels: ``d'``, channels of the pooled backbone features.
        out_channels: ``d``, the projector's output dimension.
        fusion: ``'concat'`` (:math:`g_\xi(h_1 \oplus h_2)`, ``2d' -> d' -> d``),
            ``'mixup'`` (:math:`g_\xi(\alpha h_1 + (1-\alpha) h_2)`, ``d' -> d' -> d``,
            :math:`\alpha \sim U(0, 1)` per sample) or ``'embedding'``
            (:math:`g_\zeta(z_1 \oplus z_2)`, ``2d -> d -> d``).
    """

    def __init__(self, in_channels: int, out_channels: int, fusion: str = 'concat'):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f'fusion must be one of {FUSIONS}, got {fusion!r}')
        self.fusion, self.in_channels, self.out_channels = fusion, in_channels, out_channels
        if fusion == 'embedding':
            self.g_zeta = _linear_stack(2 * out_channels, out_channels, out_channels)
        else:
            fused = 2 * in_channels if fusion == 'concat' else in_channels
            self.g_xi = _linear_stack(fused, in_channels, out_channels)

    def sample_alpha(self, h: torch.Tensor) -> Optional[torch.Tensor]:
        """The mixup coefficients of a batch (None for the other fusions)."""
        if self.fusion != 'mixup':
            return None
        return torch.rand(h.shape[0], 1, device=h.device, dtype=h.dtype)

    def forward(self, h1, h2, z1, z2, alpha: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.fusion == 'embedding':
            self._check(z1, self.out_channels, 'projections z (out_channels)')
            return self.g_zeta(torch.cat([z1, z2], dim=1))
        self._check(h1, self.in_channels, 'pooled backbone features h (in_channels)')
        if self.fusion == 'concat':
            fused = torch.cat([h1, h2], dim=1)
        else:
            if alpha is None:
                raise ValueError("mixup fusion needs alpha (CompMod.sample_alpha)")
            fused = alpha * h1 + (1 - alpha) * h2
        return self.g_xi(fused)

    @staticmethod
    def _check(x, channels, what):
        if x.shape[1] != channels:
            raise ValueError(f'CompMod was built for {channels} channels of the {what} but '
                             f'got {x.shape[1]}: set comp_mod.in_channels to the backbone\'s '
                             'output width (512 for ResNet-18, 2048 for ResNet-50) and '
                             'comp_mod.out_channels to the neck\'s out_channels.')


# --------------------------------------------------------------------------- feature tap


def _pooled(features) -> torch.Tensor:
    x = features[-1] if isinstance(features, (tuple, list)) else features
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 2:
        return x
    raise ValueError(f'MCR pools the backbone\'s last output, (N, C, H, W) or (N, C); got '
                     f'shape {tuple(x.shape)}')


def _first(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


class ViewTap(LayerRecorder):
    """A recorder of an algorithm's ``backbone`` and ``neck`` outputs.

    :meth:`attach` puts it on an algorithm; ``with tap.recording() as records`` records
    one forward, and :meth:`views` turns what it recorded into ``(h1, h2, z1, z2)``.
    """

    KEYS = ('backbone', 'neck')

    def __init__(self):
        super().__init__(list(self.KEYS), owner='MCR')

    def attach(self, algorithm: nn.Module) -> List[str]:
        """Record ``algorithm.backbone`` and ``algorithm.neck``."""
        for key in self.KEYS:
            if getattr(algorithm, key, None) is None:
                raise ValueError(f'MCR needs an algorithm with a {key}; '
                                 f'{type(algorithm).__name__} has none')
        return super().attach(algorithm)

    @staticmethod
    def embeddings(records: Dict[str, List[Record]]):
        """The neck's output of every call (every view's embedding)."""
        return [_first(r.output) for r in records['neck']]

    @staticmethod
    def views(records: Dict[str, List[Record]], views_in_one_call: bool,
              algorithm: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(h1, h2, z1, z2)``: pooled backbone features and neck outputs of the two views
        (``records``: what :meth:`recording` yielded).

        ``views_in_one_call``: the algorithm ran backbone and neck once on both views
        interleaved sample by sample (``x1[0], x2[0], x1[1], ...``, as mmpretrain's SimCLR);
        otherwise once per view. ``algorithm`` names it in the error message.
        """
        backbone = [r.output for r in records['backbone']]
        neck = [r.output for r in records['neck']]
        calls = 1 if views_in_one_call else 2
        if len(backbone) != calls or len(neck) != calls:
            seen = len(backbone) if len(backbone) == len(neck) else None
            hint = {1: ' Set MCR(views_in_one_call=True) if it runs them once on the '
                       'interleaved views.',
                    2: ' Set MCR(views_in_one_call=False) if it runs them once per view.'}
            raise RuntimeError(
                f'MCR expected {algorithm} to call its backbone and neck {calls}x per step '
                f'(once per view{", interleaved" * views_in_one_call}) but saw '
                f'{len(backbone)} backbone and {len(neck)} neck calls; MCR supports SimCLR, '
                f'BYOL, BarlowTwins and algorithms shaped like them.{hint.get(seen, "")}')
        if views_in_one_call:
            h, z = _pooled(backbone[0]), _first(neck[0])
            return h[0::2], h[1::2], z[0::2], z[1::2]
        h1, h2 = (_pooled(o) for o in backbone)
        z1, z2 = (_first(o) for o in neck)
        return h1, h2, z1, z2

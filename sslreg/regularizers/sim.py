"""ρSIM / SIM as regularizers on tapped blocks (math: :mod:`sslreg.losses.sim`).

Each tapped block gets its own reconstructor, created from one probe forward at
build time (widths must be known before the optimizer and DDP are built).
"""
from typing import Dict, List

import torch
from torch import nn

from ..losses.sim import LOSS_KINDS, rho_sim_block_loss, sim_block_loss
from .base import Regularizer, channel_dim_for, first_tensor

REDUCTIONS = ('sum', 'mean')


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """The paper's 3-layer projector: Linear-ReLU-Linear-ReLU-Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim))


def rho_sim_heads(c_in: int, c_out: int, dim: int, hidden: int, share: bool):
    """H1 (target side), H2 (output side) and G (predictor) of one block."""
    h1 = mlp(c_in, hidden, dim)
    h2 = h1 if share and c_in == c_out else mlp(c_out, hidden, dim)
    return h1, h2, nn.Linear(dim, dim)


def _key(name: str) -> str:
    return name.replace('.', '__')  # ModuleDict keys may not contain dots


def _channels(shape: torch.Size) -> int:
    if len(shape) not in (3, 4):
        raise ValueError(f'SIM regularizes (N, C, H, W) maps or (N, L, C) tokens; a tapped '
                         f'block gave shape {tuple(shape)}')
    return shape[channel_dim_for(len(shape))]


class _BlockwiseSIM(Regularizer):
    """Shared by ρSIM and SIM: per-block losses summed (or averaged) over blocks,
    summed over calls, times ``loss_weight``."""

    needs_probe = True

    def __init__(self, layers, loss_weight, kind, reduction, input_index):
        super().__init__(layers, loss_weight, input_index)
        if kind not in LOSS_KINDS:
            raise ValueError(f'kind must be one of {LOSS_KINDS}, got {kind!r}')
        if reduction not in REDUCTIONS:
            raise ValueError(f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
        self.kind, self.reduction = kind, reduction

    def reduce_terms(self, terms: Dict[str, List[torch.Tensor]]):
        total = torch.stack(terms['loss']).sum()
        if self.reduction == 'mean':
            total = total / self.num_blocks
        return {'loss': self.weight * total}

    @property
    def num_blocks(self) -> int:
        return len(self.layer_names)

    def on_block(self, name, block_input, output):
        if self.training and torch.is_grad_enabled():
            self.add_term('loss', self.block_loss(name, block_input, first_tensor(output)))
        return None


class RhoSIM(_BlockwiseSIM):
    """ρSIM: per block, predict the standardized projection of stopgrad(z_{l-1}) from
    z_l on a fraction ``rho`` of token positions (Eq. 4), summed over blocks (Eq. 1).

    Args:
        layers: blocks to regularize (paths/globs).
        rho: fraction of token positions sampled, in (0, 1] (paper default 0.2).
        dim: projection width D (128); hidden: projector hidden width (256).
        share_projector: one projector for both sides when a block keeps its width.
        per_sample: independent positions per sample (default: one set per batch).
        kind: 'mse' (Eq. 4), 'l2' (authors' code), 'l1', 'smooth_l1', 'cos', 'kl'.
        reduction: 'sum' over blocks (Eq. 1) or 'mean'.
        loss_weight: λ (paper default 5e-3).
    """

    def __init__(self, layers=None, rho: float = 0.2, dim: int = 128, hidden: int = 256,
                 share_projector: bool = False, per_sample: bool = False, kind: str = 'mse',
                 reduction: str = 'sum', eps: float = 1e-5, loss_weight: float = 5e-3,
                 input_index: int = 0):
        super().__init__(layers, loss_weight, kind, reduction, input_index)
        if not 0 < rho <= 1:
            raise ValueError(f'rho is the fraction of token positions sampled and must be in '
                             f'(0, 1], got rho={rho}')
        self.rho, self.dim, self.hidden = rho, dim, hidden
        self.share_projector, self.per_sample, self.eps = share_projector, per_sample, eps
        self.h1, self.h2, self.g = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()

    def build_from_probe(self):
        for name, (in_shape, out_shape) in self.probe_shapes.items():
            self.add_block(_key(name), _channels(in_shape), _channels(out_shape))

    def add_block(self, key: str, c_in: int, c_out: int):
        if key not in self.g:
            self.h1[key], self.h2[key], self.g[key] = rho_sim_heads(
                c_in, c_out, self.dim, self.hidden, self.share_projector)

    def block_loss(self, name, z_in, z_out):
        key = _key(name)
        # rho_sim_block_loss stops the gradient of z_in itself.
        return rho_sim_block_loss(z_in, z_out, self.h1[key], self.h2[key], self.g[key],
                                  self.rho, channel_dim_for(z_out.dim()), self.kind,
                                  self.per_sample, self.eps)


class SIM(_BlockwiseSIM):
    """SIM, the unreduced form: per block a linear decoder maps every token of z_l to
    the width of z_{l-1} and reconstructs stopgrad(z_{l-1}) (resampled onto z_l's grid
    when a block changes it); no sampling, no projection, no standardization."""

    def __init__(self, layers, kind: str = 'mse', reduction: str = 'sum',
                 loss_weight: float = 5e-3, input_index: int = 0):
        super().__init__(layers, loss_weight, kind, reduction, input_index)
        self.decoders = nn.ModuleDict()

    def build_from_probe(self):
        for name, (in_shape, out_shape) in self.probe_shapes.items():
            if _key(name) not in self.decoders:
                c_in = _channels(in_shape)
                c_out = _channels(out_shape)
                self.decoders[_key(name)] = nn.Linear(c_out, c_in)

    def block_loss(self, name, z_in, z_out):
        return sim_block_loss(z_in, z_out, self.decoders[_key(name)],
                              channel_dim_for(z_out.dim()), self.kind)

"""ρSIM / SIM as regularizers on tapped blocks (math: :mod:`sslreg.losses.sim`).

Each tapped block gets its own reconstructor, created from one probe forward at
build time (widths must be known before the optimizer and DDP are built).

Head forms (``head=``), both with the target side under stop-gradient (Eq. 4):

* ``'separate'`` (preset ``'paper'``; the paper's notation): ``H_1`` and ``H_2`` are
  distinct MLPs. The stop-gradient leaves ``H_1`` no gradient, so it is a fixed random
  projection, frozen (``requires_grad=False``; saved with the model, so a resumed run
  keeps the same projection). Chosen deliberately: a target that cannot move cannot
  drift toward what is easy to predict, so the loss keeps measuring what the block
  lost (tests/test_sim_fidelity.py: a block that discards 28 of 32 directions scores
  several times an invertible one).
* ``'shared'`` (preset ``'authors_code'``): one projector ``P`` for both sides,
  ``H_1 = P`` and ``H_2 = P ∘ pre_proj`` with a bias-free ``pre_proj: C_out -> C_in``
  when the block changes width. ``P`` learns through the prediction branch only, but
  as it also defines the target, the target still moves with training (in the toy
  above the separation is 0.7-3.5x across seeds, against 3.7-21x for 'separate').

Projector shape (both forms, as the authors' code): ``Linear(c, 2K)-ReLU-Linear(2K, K)-
ReLU-Linear(K, K)`` (``hidden = 2K`` unless given), predictor ``G = Linear(K, K)``.
``dim='sqrt'`` sets ``K = int(sqrt(C_in))`` per block (the authors' earlier commit;
closest to the paper's parameter deltas, see docs/fidelity.md), an int sets it for all.
"""
import math
from typing import Dict, List, Optional, Union

import torch
from torch import nn

from ..losses.sim import LOSS_KINDS, num_sampled_tokens, rho_sim_block_loss, sim_block_loss
from .base import Regularizer, channel_dim_for, first_tensor
from .grad_share import GradShareStats, tap_gradient

REDUCTIONS = ('sum', 'mean')
HEADS = ('separate', 'shared')

#: The two readings of ρSIM. ``'paper'``: Eq. 1 and 4 as written (sum over blocks,
#: squared standardized MSE, G after the standardization, separate H1/H2 with H1
#: fixed), at sqrt widths. ``'authors_code'``: SIM-pytorch's ``sim_loss.py`` at HEAD
#: (λ per block averaged over blocks, un-squared per-token L2 of the standardized
#: tensors, unbiased std + 1e-6 on σ, n = int(ρL), G before the standardization, K=128).
PRESETS = {
    'paper': dict(head='separate', dim='sqrt', hidden=None, kind='mse', reduction='sum',
                  eps=1e-5, unbiased=False, eps_on_std=False, count='round',
                  predictor_position='after_norm'),
    'authors_code': dict(head='shared', dim=128, hidden=None, kind='l2', reduction='mean',
                         eps=1e-6, unbiased=True, eps_on_std=True, count='floor',
                         predictor_position='before_norm'),
}


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """The 3-layer projector of the authors' code: Linear-ReLU-Linear-ReLU-Linear,
    widths ``in_dim -> hidden -> out_dim -> out_dim``."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim), nn.ReLU(inplace=True),
                         nn.Linear(out_dim, out_dim))


def projection_width(dim: Union[int, str], c_in: int) -> int:
    """K for a block whose input has ``c_in`` channels."""
    if dim == 'sqrt':
        return max(1, math.isqrt(c_in))
    if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1:
        return dim
    raise ValueError(f"dim must be a positive int or 'sqrt' (K = int(sqrt(C_in))), got {dim!r}")


class RhoSIMHead(nn.Module):
    """H1, H2 and G of one block (module docstring for the two forms)."""

    def __init__(self, c_in: int, c_out: int, dim: int, hidden: int, head: str = 'separate'):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f'head must be one of {HEADS}, got {head!r}')
        self.head = head
        if head == 'shared':
            self.proj = mlp(c_in, hidden, dim)
            self.pre_proj = nn.Linear(c_out, c_in, bias=False) if c_out != c_in else nn.Identity()
        else:
            self.target_proj = mlp(c_in, hidden, dim).requires_grad_(False)
            self.output_proj = mlp(c_out, hidden, dim)
        self.predictor = nn.Linear(dim, dim)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """H1: the target side (called under no_grad by the loss)."""
        return self.proj(x) if self.head == 'shared' else self.target_proj(x)

    def output(self, y: torch.Tensor) -> torch.Tensor:
        """H2: the output side."""
        return self.proj(self.pre_proj(y)) if self.head == 'shared' else self.output_proj(y)


def _key(name: str) -> str:
    return name.replace('.', '__')  # ModuleDict keys may not contain dots


def _positions(shape: torch.Size) -> str:
    """The token positions of a block output's shape, as text ('1x1', 'L=1')."""
    return 'x'.join(map(str, shape[-2:])) if len(shape) == 4 else f'L={shape[1]}'


def _num_positions(shape: torch.Size) -> int:
    return math.prod(shape[-2:]) if len(shape) == 4 else shape[1]


def _channels(shape: torch.Size) -> int:
    if len(shape) not in (3, 4):
        raise ValueError(f'SIM regularizes (N, C, H, W) maps or (N, L, C) tokens; a tapped '
                         f'block gave shape {tuple(shape)}')
    return shape[channel_dim_for(len(shape))]


class _BlockwiseSIM(GradShareStats, Regularizer):
    """Shared by ρSIM and SIM: per-block losses summed (or averaged) over blocks,
    summed over calls, times ``loss_weight``.

    **Gradient share** (:class:`GradShareStats`): on the first training step, the
    gradient the loss adds at each tapped block's output (where the prediction branch
    reads it; the target side is under stop-gradient) against the gradient arriving
    there from downstream, by :func:`tap_gradient`. Only that step pays for it (an
    identity node, a tensor hook and two norms per block); :meth:`reset_grad_share`
    measures the next step again. ``SIMNeck`` is not measured.
    """

    needs_probe = True

    def __init__(self, layers, loss_weight, kind, reduction, input_index):
        super().__init__(layers, loss_weight, input_index)
        if kind not in LOSS_KINDS:
            raise ValueError(f'kind must be one of {LOSS_KINDS}, got {kind!r}')
        if reduction not in REDUCTIONS:
            raise ValueError(f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
        self.kind, self.reduction = kind, reduction
        self._grad_norms: list = []
        self._grad_norms_last: list = []

    @property
    def measures_grad_share(self) -> bool:
        return self.layers is not None  # taps (SIMNeck calls block_loss itself)

    def reset_grad_share(self):
        """Measure the gradient share again at the next training step."""
        self._grad_norms, self._grad_norms_last = [], []

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
            z_out = first_tensor(output)
            if z_out.requires_grad and not (self._grad_norms or self._grad_norms_last):
                z_out = tap_gradient(z_out, self._grad_norms)  # the first step only
            self.add_term('loss', self.block_loss(name, block_input, z_out))
        return None


class RhoSIM(_BlockwiseSIM):
    """ρSIM: per block, predict the standardized projection of z_{l-1} (under
    stop-gradient) from z_l on a fraction ``rho`` of token positions (Eq. 4), reduced
    over blocks (Eq. 1).

    Args:
        layers: blocks to regularize (paths/globs).
        rho: fraction of token positions sampled, in (0, 1] (paper default 0.2).
        preset: ``'paper'`` (default) or ``'authors_code'`` (:data:`PRESETS`); fills
            every option below left at None.
        head: ``'separate'`` or ``'shared'`` (module docstring).
        dim: projection width K, an int or ``'sqrt'``; hidden: the first hidden width
            (None: 2K).
        kind: 'mse' (Eq. 4), 'l2' (authors' code), 'l1', 'smooth_l1', 'cos', 'kl',
            'wasserstein'.
        reduction: 'sum' over blocks (Eq. 1) or 'mean' (authors' code).
        normalize: False drops the standardization (Table 10's unnormalized variants).
        eps, unbiased, eps_on_std, count, predictor_position: see
            :func:`sslreg.losses.sim.rho_sim_block_loss`.
        per_sample: independent positions per sample (default: one set per batch).
        checkpoint: recompute each block's prediction branch in backward (memory).
        loss_weight: λ (paper 5e-3), per block: with ``reduction='mean'`` the total
            is λ times the mean block loss, as the authors' code.
    """

    def __init__(self, layers=None, rho: float = 0.2, preset: str = 'paper',
                 head: Optional[str] = None, dim: Union[int, str, None] = None,
                 hidden: Optional[int] = None, kind: Optional[str] = None,
                 reduction: Optional[str] = None, normalize: bool = True,
                 eps: Optional[float] = None, unbiased: Optional[bool] = None,
                 eps_on_std: Optional[bool] = None, count: Optional[str] = None,
                 predictor_position: Optional[str] = None, per_sample: bool = False,
                 checkpoint: bool = False, loss_weight: float = 5e-3, input_index: int = 0):
        if preset not in PRESETS:
            raise ValueError(f'RhoSIM preset must be one of {tuple(PRESETS)}, got {preset!r}')
        given = dict(head=head, dim=dim, hidden=hidden, kind=kind, reduction=reduction,
                     eps=eps, unbiased=unbiased, eps_on_std=eps_on_std, count=count,
                     predictor_position=predictor_position)
        opts = {k: PRESETS[preset][k] if v is None else v for k, v in given.items()}
        super().__init__(layers, loss_weight, opts['kind'], opts['reduction'], input_index)
        if not 0 < rho <= 1:
            raise ValueError(f'rho is the fraction of token positions sampled and must be in '
                             f'(0, 1], got rho={rho}')
        if opts['head'] not in HEADS:
            raise ValueError(f"RhoSIM head must be one of {HEADS}, got {opts['head']!r}")
        projection_width(opts['dim'], 1)  # validates dim before any block is built
        self.rho, self.preset, self.head = rho, preset, opts['head']
        self.dim, self.hidden = opts['dim'], opts['hidden']
        self.normalize, self.per_sample, self.checkpoint = normalize, per_sample, checkpoint
        self.eps, self.unbiased, self.eps_on_std = opts['eps'], opts['unbiased'], opts['eps_on_std']
        self.count, self.predictor_position = opts['count'], opts['predictor_position']
        self.heads = nn.ModuleDict()

    def build_from_probe(self):
        for name, (in_shape, out_shape) in self.probe_shapes.items():
            self.add_block(_key(name), _channels(in_shape), _channels(out_shape))

    def _sampled(self, shape: torch.Size) -> Optional[str]:
        """None when ρSIM can sample a block output of ``shape``, else why not."""
        try:
            num_sampled_tokens(_num_positions(shape), self.rho, self.count)
        except ValueError as err:
            return str(err)
        return None

    def check_probe_sizes(self, probe_input=None):
        """Refuse, all at once and with the fix, the blocks whose output in the probe
        forward has too few positions to sample (a 1x1 map: ResNet's layer4 at 32 px).
        ``RegularizedModel`` calls it at build time; used alone, the first training
        forward names such a block."""
        small = {name: out for name, (_, out) in self.probe_shapes.items()
                 if self._sampled(out) is not None}
        if not small:
            return
        keep = [name for name in self.layer_names if name not in small]
        listed = ', '.join(f'{name!r} ({_positions(out)})' for name, out in small.items())
        at = '' if probe_input is None else f' at probe_input={tuple(probe_input)}'
        raise ValueError(
            f'RhoSIM: in the probe forward{at} the blocks {listed} have too few output '
            'positions: rhoSIM standardizes over the positions it samples, at least 2 '
            f'(rho={self.rho}, count={self.count!r}). Fix: leave them out, e.g. '
            f'layers={keep!r}, or train on larger images (and set '
            'RegularizedModel(probe_input=...) to the training size)')

    def add_block(self, key: str, c_in: int, c_out: int):
        if key not in self.heads:
            k = projection_width(self.dim, c_in)
            self.heads[key] = RhoSIMHead(c_in, c_out, k, self.hidden or 2 * k, self.head)

    def block_loss(self, name, z_in, z_out):
        head = self.heads[_key(name)]
        try:
            return rho_sim_block_loss(
                z_in, z_out, head.target, head.output, head.predictor, self.rho,
                channel_dim_for(z_out.dim()), self.kind, self.per_sample, self.eps,
                normalize=self.normalize, unbiased=self.unbiased, eps_on_std=self.eps_on_std,
                count=self.count, predictor_position=self.predictor_position,
                checkpoint=self.checkpoint)
        except ValueError as err:
            hint = ''
            if self._sampled(z_out.shape) is not None:
                keep = [n for n in self.layer_names if n != name]
                probe = self.probe_shapes.get(name)
                hint = (f' (e.g. layers={keep!r}, leaving out any other block as small at '
                        'this input size)')
                if probe is not None:
                    hint += (f'; the probe forward saw a {_positions(probe[1])} map here: set '
                             'RegularizedModel(probe_input=...) to the training size to have '
                             'this found at build time')
            raise ValueError(f'{type(self).__name__} at layer {name!r}: {err}{hint}') from err


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

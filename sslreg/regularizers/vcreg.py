"""VCReg as a regularizer on tapped layers (math: :mod:`sslreg.losses.vcreg`)."""
from typing import List, Optional, Tuple

import torch

from ..losses.vcreg import COV_SCALES, batch_demean, vcreg_fast, vcreg_loss
from .base import Regularizer, channel_dim_for
from .grad_share import GradShareStats, tap_gradient

MODES = ('fast', 'explicit')


def map_tensors(output, fn):
    """Apply ``fn`` to the output tensor, or to each >=2-D tensor of a tuple/list
    (multi-level features); other items pass through."""
    return map_tensors_indexed(output, lambda _, t: fn(t))


def map_tensors_indexed(output, fn):
    """As :func:`map_tensors`, with ``fn(k, tensor)``: ``k`` counts the regularized
    tensors (0 for a single tensor output)."""
    if torch.is_tensor(output):
        return fn(0, output)
    if isinstance(output, (tuple, list)):
        out, k = [], 0
        for t in output:
            if torch.is_tensor(t) and t.dim() >= 2:
                t, k = fn(k, t), k + 1
            out.append(t)
        return type(output)(out)
    raise TypeError(f'VCReg: cannot regularize a {type(output).__name__} output')


def _regularized_shapes(output) -> List[torch.Size]:
    shapes = []
    map_tensors_indexed(output, lambda k, t: shapes.append(t.shape) or t)
    return shapes


class VCReg(GradShareStats, Regularizer):
    r"""Variance-covariance regularization of the outputs of the tapped layers.

    Zhu et al., "Variance-Covariance Regularization Improves Representation Learning"
    (arXiv:2306.13292); the math, Eq. 2, Algorithm 1 and their difference are in
    :mod:`sslreg.losses.vcreg`. Every axis but the channel axis is a sample (batch x
    spatial positions / tokens), the covariance is the unbiased one (``1/(n-1)``), the
    std is :math:`\sqrt{C_{ii} + \epsilon}`.

    ``mode='fast'`` (default) leaves the forward untouched and adds the gradient of
    the loss in backward (:func:`vcreg_fast`); its value is logged as ``<name>_value``
    and not summed into the loss. ``mode='explicit'`` adds ``loss_<name>``. Per-block
    losses are summed over blocks and calls; ``loss_weight`` multiplies alpha and beta.

    The paper's ambiguities, as options:

    * ``cov_scale``: ``'eq2'`` (default) is Eq. 2; ``'algorithm1'`` is what the
      paper's Algorithm 1 (App. B, the implementation its experiments use)
      computes: the covariance gradient without the ``1/(n-1)`` of
      :math:`\partial C/\partial z`, i.e. the gradient of Eq. 2 with ``beta``
      times ``n - 1`` (``n`` samples, global under ``sync``). The paper's alpha/beta
      grids were tuned under Algorithm 1; take them with ``'algorithm1'``. Both modes
      give the same gradient for either value. Algorithm 1 computes per-device
      statistics; with ``sync=True`` its factor is the global ``N - 1`` and, after
      DDP's averaging, the covariance gradient is about ``world_size`` times the
      per-device Algorithm 1's: use ``sync=False`` to reproduce the paper's scale.
    * ``demean``: App. A puts "a mean removal layer along the batch preceding the
      VCReg layer", Algorithm 1 "a batch demean operation before calling the
      function". ``demean=True`` makes the tapped output, in training, ``x - mean``
      (mean over the sample axes, per channel, :func:`batch_demean`; the global mean
      of all ranks with ``sync=True``), and that demeaned tensor goes on to the rest
      of the network *and* is what VCReg regularizes: the forward changes, as with a
      layer inserted after each tapped block. **Evaluation** (the paper is silent):
      the layer subtracts a running mean, updated in training as BatchNorm's
      (``running = (1 - m) running + m * batch_mean``, ``m = demean_momentum``,
      default 0.1, also when the regularizer is not collecting), because layers
      downstream were trained on zero-mean inputs: subtracting nothing at eval would
      shift every following layer's input by the mean the network learned to do
      without. The running means are buffers (``running_mean__<layer>``), so they are
      saved in checkpoints and broadcast by DDP like BN's. Train/eval follows the
      tapped module's ``training`` flag (the neck's own for :class:`VCRegNeck`).
      Because it has state, a tap-based ``demean=True`` needs the model wrapper
      (``RegularizedModel``: one probe forward gives the widths); ``RegularizerHook``
      refuses it. Note that the demean is then part of the trained network:
      ``tools/strip_regularizers.py`` would drop it with the regularizer (use
      :class:`VCRegNeck`, part of the architecture, to keep it in a plain checkpoint).
    * ``delta`` (smooth-L1 on the covariance, Sec. 3.2, "for intermediate layers"):
      the paper gives no value for its threshold; ``None`` (squares) is the default,
      a value is a choice of the user.

    **Gradient share** (:class:`GradShareStats`): after each backward,
    :attr:`last_grad_share` is ``||VCReg gradient|| / ||gradient from downstream||`` at
    the regularized tensors. ``RegularizerHook`` logs it once, after the first training
    iteration.

    Args:
        layers: module paths/globs to regularize (their outputs).
        alpha, beta, eps, delta: as in :func:`vcreg_loss` (delta: smooth-L1 on the
            covariance, None for squares; the paper gives no delta).
        mode: 'fast' or 'explicit'.
        channel_dim: None picks 1 for 4-D/2-D maps and -1 for (N, L, C) tokens
            (:func:`channel_dim_for`).
        sync: statistics over all DDP ranks (and the demean's mean).
        sample_ratio: fast mode only: estimate the statistics from this fraction of
            the positions (see :func:`vcreg_fast`); 1 = exact (default).
        loss_weight, input_index: see :class:`Regularizer`.
        cov_scale: 'eq2' (default) or 'algorithm1' (above).
        demean: put the paper's batch-mean removal before VCReg (above).
        demean_momentum: running-mean momentum of the demean layer, in (0, 1].
    """

    def __init__(self, layers=None, alpha: float = 1.0, beta: float = 1.0, eps: float = 1e-4,
                 delta: Optional[float] = None, mode: str = 'fast',
                 channel_dim: Optional[int] = None, sync: bool = False,
                 sample_ratio: float = 1.0, loss_weight: float = 1.0, input_index: int = 0,
                 cov_scale: str = 'eq2', demean: bool = False, demean_momentum: float = 0.1):
        super().__init__(layers, loss_weight, input_index)
        if mode not in MODES:
            raise ValueError(f"VCReg mode must be one of {MODES}, got {mode!r}")
        if not 0 < sample_ratio <= 1 or (mode == 'explicit' and sample_ratio != 1):
            raise ValueError(f"VCReg sample_ratio must be in (0, 1] and is for mode='fast' "
                             f"only; got sample_ratio={sample_ratio}, mode={mode!r}")
        if cov_scale not in COV_SCALES:
            raise ValueError(
                f"VCReg cov_scale must be one of {', '.join(repr(c) for c in COV_SCALES)} "
                f"('eq2': the paper's Eq. 2; 'algorithm1': its Algorithm 1, beta times n-1), "
                f"got {cov_scale!r}")
        if not 0 < demean_momentum <= 1:
            raise ValueError(f'VCReg demean_momentum must be in (0, 1], got {demean_momentum}')
        self.sample_ratio = sample_ratio
        self.alpha, self.beta, self.eps, self.delta = alpha, beta, eps, delta
        self.mode, self.channel_dim, self.sync = mode, channel_dim, sync
        self.cov_scale = cov_scale
        self.demean, self.demean_momentum = bool(demean), float(demean_momentum)
        # taps need the widths of the running means: one probe forward (RegularizedModel)
        self.needs_probe = self.demean and layers is not None
        self._probe_widths = {}
        self._grad_norms: List[Tuple[torch.Tensor, torch.Tensor]] = []
        self._grad_norms_last: List[Tuple[torch.Tensor, torch.Tensor]] = []

    # ------------------------------------------------------------------ VCReg itself
    def _channel_dim_of(self, ndim: int) -> int:
        return channel_dim_for(ndim) if self.channel_dim is None else self.channel_dim

    def _channel_dim(self, x: torch.Tensor) -> int:
        return self._channel_dim_of(x.dim())

    def regularize(self, x: torch.Tensor) -> torch.Tensor:
        """Apply VCReg to one feature tensor; returns x itself (explicit) or a tensor
        equal to x whose backward adds the VCReg gradient (fast).

        Terms are recorded only while a collector has made this module active; the
        fast form's gradient needs no collector, the explicit loss does."""
        if not (self.training and torch.is_grad_enabled() and x.requires_grad):
            return x
        channel_dim = self._channel_dim(x)
        alpha, beta = self.alpha * self.weight, self.beta * self.weight
        sink = self._grad_norm_sink()
        if self.mode == 'fast':
            stats = [] if self.active else None
            y = vcreg_fast(x, alpha, beta, self.eps, self.delta, channel_dim, self.sync, stats,
                           self.sample_ratio, self.cov_scale, sink)
            if stats:
                self.add_term('value', stats[0])
            return y
        if not self.active:
            raise RuntimeError(
                f"{type(self).__name__}(mode='explicit') ran in training but nothing collects "
                "its loss: wrap the model in RegularizedModel or add "
                "custom_hooks=[dict(type='RegularizerHook')].")
        # the loss reads a view of x only it reads: its gradient share (tap_gradient)
        loss = vcreg_loss(tap_gradient(x, sink), alpha, beta, self.eps, self.delta,
                          channel_dim, self.sync, self.cov_scale)
        self.add_term('loss', loss)
        return x

    # ------------------------------------------------------------------ demean layer
    @staticmethod
    def _buffer_name(layer: str, k: int) -> str:
        name = 'running_mean'
        if layer:
            name += '__' + layer.replace('.', '__')
        return name + (f'__out{k}' if k else '')

    def _add_running_mean(self, layer: str, k: int, width: int):
        self.register_buffer(self._buffer_name(layer, k), torch.zeros(int(width)))

    def _demean(self, layer: str, k: int, x: torch.Tensor, training: bool) -> torch.Tensor:
        channel_dim = self._channel_dim(x)
        name = self._buffer_name(layer, k)
        running = getattr(self, name, None)
        where = f'layer {layer!r}' if layer else 'the neck'
        if running is None:
            raise RuntimeError(
                f'VCReg(demean=True): no running mean for tensor {k} of {where}; it was not '
                'seen by the probe forward (taps) or not declared in in_channels (VCRegNeck)')
        width = x.shape[channel_dim]
        if running.numel() != width:
            raise ValueError(f'VCReg(demean=True): tensor {k} of {where} has {width} channels '
                             f'(channel_dim={channel_dim}), its running mean {running.numel()}')
        if training:
            y, mean = batch_demean(x, channel_dim, self.sync)
            with torch.no_grad():
                running.lerp_(mean.detach().to(running.dtype), self.demean_momentum)
            return y
        shape = [1] * x.dim()
        shape[channel_dim] = width
        return x - running.to(x.dtype).view(shape)

    def process(self, layer: str, output, training: bool, regularize: bool):
        """The tapped/neck output after the demean layer (if on) and VCReg (if
        ``regularize``)."""
        def fn(k, t):
            if self.demean:
                t = self._demean(layer, k, t, training)
            return self.regularize(t) if regularize else t
        return map_tensors_indexed(output, fn)

    # ------------------------------------------------------------------ taps
    def _on_record(self, record):
        if self.probing:
            if self.demean:
                self._probe_widths[record.name] = [
                    shape[self._channel_dim_of(len(shape))]
                    for shape in _regularized_shapes(record.output)]
            return super()._on_record(record)
        if not self.demean:
            return super()._on_record(record)
        return self._on_idle(record)

    def _on_idle(self, record):
        # the demean layer is part of the network: it acts whether or not VCReg records
        if not self.demean:
            return None
        return self.process(record.name, record.output, record.module.training, self.active)

    def build_from_probe(self):
        if not self.demean:
            return
        for layer in self.layer_names:
            for k, width in enumerate(self._probe_widths.get(layer, [])):
                if not hasattr(self, self._buffer_name(layer, k)):
                    self._add_running_mean(layer, k, width)

    def on_block(self, name, block_input, output):
        return map_tensors(output, self.regularize)


r"""MCR: Meta Comprehensive Regularization (CompMod + bi-level maximum-entropy coding).

"Self-Supervised Representation Learning with Meta Comprehensive Regularization" (no
code released; this is a reference implementation). ``MCR`` wraps an mmpretrain SSL
algorithm (SimCLR, BYOL, BarlowTwins; backbone/neck/head untouched) and adds CompMod:

* **fusion** of the two views' pooled backbone features ``h1, h2`` (``d'`` channels):
  ``'concat'`` (default) :math:`\hat h = h_1 \oplus h_2`; ``'mixup'``
  :math:`\hat h = \alpha h_1 + (1-\alpha) h_2`, :math:`\alpha \sim U(0, 1)` per sample;
  then :math:`\hat Z = g_\xi(\hat h)`, :math:`g_\xi` a ``2d' -> d' -> d`` (``d' -> d'
  -> d`` for mixup) linear stack with a ReLU between; or ``'embedding'``:
  :math:`\hat Z = g_\zeta(z_1 \oplus z_2)`, ``2d -> d -> d``, on the projections.
* **losses** (:mod:`sslreg.losses.mec`, Eq. 6-7): :math:`\mathcal{L}_{mcr} =
  \sum_t \mathrm{mec}(\hat Z, Z_t)` and :math:`\mathcal{L}_{comp} = \mathrm{mec}(\hat Z,
  \hat Z)`, MEC's :math:`\lambda = d/(m\epsilon^2)` from the batch (:math:`1/\lambda`
  warmed up from 8x over ``lam_warmup_epochs``) and :math:`\mu` chosen by ``mec_scale``.
  The MCR paper gives no :math:`\mu`, :math:`\lambda`, order or :math:`\epsilon` ("μ
  and λ are hyperparameters"; its ``m`` is the number of Taylor terms), so the scales
  are named after where they come from: ``'mec_training'`` (default) is the MEC authors'
  training coefficient :math:`\mu = 1/(m\lambda)` (the series per sample and per
  :math:`\lambda`), ``'coding_length'`` MEC's coding-length coefficient
  :math:`\mu = (m+d)/2`, which MEC's code only logs. At the training scale the
  defaults :math:`\lambda_1 = 0.5, \lambda_2 = 0.2` give each MCR term ~10% of the
  SSL loss's gradient on SimCLR's embeddings (:meth:`MCR.gradient_shares`, logged at
  the first iteration; the configs set per-algorithm values); the paper's Table 6
  values (0.01, 0.1) belong to its unstated :math:`\mu` and leave them at 0.2-0.5%.
* **bi-level update** (Algorithm 1), in :meth:`MCR.train_step`:

  1. :math:`g = \nabla_{\theta,\phi}(\mathcal{L}_{ssl} + \lambda_1 \mathcal{L}_{mcr})`
     with :math:`\xi` fixed; the ``'base'`` optimizer steps :math:`\theta, \phi` with it.
  2. the virtual step :math:`(\theta_\xi, \phi_\xi) = (\theta, \phi) - \eta\, g(\xi)`
     (``eta``: the base optimizer's current learning rate of each parameter, or
     ``virtual_lr``), and the ``'meta'`` optimizer steps :math:`\xi` with

     .. math::

        \nabla_\xi \Bigl[\mathcal{L}_{ssl}(\theta_\xi, \phi_\xi)
            + \lambda_2 \mathcal{L}_{comp}\bigl(g_\xi(\hat h)\bigr)\Bigr]
        = -\eta\,\Bigl(\frac{\partial g}{\partial \xi}\Bigr)^{\!\top} v
          + \lambda_2 \nabla_\xi \mathcal{L}_{comp},
        \qquad v = \nabla \mathcal{L}_{ssl}(\theta_\xi, \phi_\xi).

     ``meta_grad='second_order'`` (default) takes :math:`(\partial g/\partial\xi)^\top v`
     exactly: ``g`` is built with ``create_graph=True``, ``v`` comes from a
     ``torch.func.functional_call`` of the algorithm at :math:`\theta_\xi`, and one
     vector-Jacobian product through ``g`` gives the term. ``'finite_difference'``
     approximates it as DARTS does (Eq. 8 there), :math:`\lambda_1 [\nabla_\xi
     \mathcal{L}_{mcr}(\theta^+) - \nabla_\xi \mathcal{L}_{mcr}(\theta^-)] / 2\varepsilon`,
     :math:`\theta^\pm = \theta \pm \varepsilon \eta v`: two forward passes, no
     second-order graph (for large models). ``'first_order'`` drops the term (as
     first-order DARTS/MAML do), so :math:`\xi` learns from :math:`\mathcal{L}_{comp}`
     only; the cheapest, no virtual step at all. ``meta_interval=k`` runs step 2 every
     ``k``-th iteration only (a speed/fidelity trade-off; Algorithm 1 is ``k=1``).

  :math:`\mathcal{L}_{comp}` is taken at the current :math:`\theta` (the features of step
  1, detached: only :math:`\xi` is updated by step 2). The virtual forward runs on
  copies of the buffers and with EMA target networks frozen, so BN statistics and
  BYOL's target see exactly one update per iteration, as in the base algorithm; with
  :math:`\lambda_1 = \lambda_2 = 0` the parameters follow the base algorithm's update
  bit for bit.

MMEngine mapping. ``optim_wrapper`` is an ``OptimWrapperDict`` with ``'base'`` (the
wrapped algorithm: :math:`\theta, \phi`, predictor heads included) and ``'meta'``
(CompMod: :math:`\xi`, or :math:`\zeta`), built by :class:`MCROptimWrapperConstructor`::

    optim_wrapper = dict(
        constructor='MCROptimWrapperConstructor',
        base=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.06, momentum=0.9)),
        meta=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3)))
    param_scheduler = dict(base=[dict(type='CosineAnnealingLR', ...)], meta=[])

Each sub-config is an ordinary optimizer-wrapper config (``paramwise_cfg`` and
``constructor`` per key allowed). The Runner saves and resumes both optimizers and
both scheduler lists, and logs ``base.lr`` / ``meta.lr``. Each step is applied through
the wrapper's own ``update_params`` (gradient accumulation, clipping and its counters
keep working).

Several processes (``tools/dist_train.sh``, SLURM): set
``model_wrapper_cfg = dict(type='MCRDataParallel')`` (the MCR configs do). DDP's reducer
cannot see gradients taken with ``torch.autograd.grad``, so MCR averages them itself; the
update is that of the global objective, the mean of the ranks' objectives, as DDP's would
be: :math:`g` is averaged over ranks before both the real and the virtual step, :math:`v`
is averaged, each rank takes :math:`(\partial g_r/\partial\xi)^\top \bar v` through its
own graph and the :math:`\xi`-gradients are averaged. BatchNorm is per rank (SyncBN is
reverted: its backward is not twice differentiable).

Limitations: no AMP; backbones whose last output is ``(N, C, H, W)`` or
``(N, C)``; algorithms that call their backbone and neck once per view (BYOL,
BarlowTwins, SimSiam) or once on the interleaved views (SimCLR).
"""
import copy
import functools
from contextlib import contextmanager
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_world_size
from mmengine.logging import MessageHub, print_log
from mmengine.model import (BaseAveragedModel, BaseModel, is_model_wrapper,
                            revert_sync_batchnorm)
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import MODEL_WRAPPERS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn
from torch.func import functional_call

from ..losses.distributed import rank_mean
from ..losses.mec import comp_loss, mcr_loss, mec_hparams, mec_lambda_warmup
from .regularized_model import load_architecture_cfg

FUSIONS = ('concat', 'mixup', 'embedding')
META_GRADS = ('second_order', 'finite_difference', 'first_order')
MEC_SCALES = ('mec_training', 'coding_length')
#: The names these scales had before they were named after their source.
_OLD_MEC_SCALES = {'mec_code': 'mec_training', 'paper': 'coding_length'}


# --------------------------------------------------------------------------- CompMod


def _linear_stack(in_channels: int, hid_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_channels, hid_channels), nn.ReLU(inplace=True),
                         nn.Linear(hid_channels, out_channels))


class CompMod(nn.Module):
    r"""Fusion of two views and the fusion network (:math:`g_\xi` or :math:`g_\zeta`).

    Args:
        in_channels: ``d'``, channels of the pooled backbone features.
        out_channels: ``d``, the projector's output dimension.
        fusion: ``'concat'``, ``'mixup'`` or ``'embedding'`` (module docstring).
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


# --------------------------------------------------------------------------- feature taps


class _Tap:
    """Records backbone and neck outputs while ``active``."""

    def __init__(self):
        self.active = False
        self.outputs = {'backbone': [], 'neck': []}

    def record(self, key, module, inputs, output):
        if self.active:
            self.outputs[key].append(output)

    @contextmanager
    def recording(self):
        self.outputs = {'backbone': [], 'neck': []}
        self.active = True
        try:
            yield self.outputs
        finally:
            self.active = False

    def clear(self):
        self.outputs = {'backbone': [], 'neck': []}


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


@contextmanager
def _frozen_averaged_models(module: nn.Module):
    """No EMA update (BYOL's target network) inside: the virtual forwards must not
    move the target a second time."""
    averaged = [m for m in module.modules() if isinstance(m, BaseAveragedModel)]
    for m in averaged:
        m.update_parameters = lambda *args, **kwargs: None
    try:
        yield
    finally:
        for m in averaged:
            del m.update_parameters


class BilevelStep(NamedTuple):
    """What one MCR iteration computes: gradients for the two optimizers, logs."""
    base_grads: List[Optional[torch.Tensor]]  # aligned with MCR.base_parameters()
    meta_grads: List[Optional[torch.Tensor]]  # aligned with MCR.meta_parameters()
    log_vars: Dict[str, torch.Tensor]


# --------------------------------------------------------------------------- the algorithm


@MODELS.register_module()
class MCR(BaseModel):
    """An mmpretrain SSL algorithm with CompMod and the bi-level MCR update.

    Args:
        algorithm: the SSL algorithm's model dict (``SimCLR``, ``BYOL``,
            ``BarlowTwins``), or ``dict(cfg_path='mmpretrain::...py', **overrides)``.
        comp_mod: ``dict(in_channels=d', out_channels=d, fusion='concat')``.
        lambda1: weight of L_mcr in step 1. Default 0.5: at ``mec_scale='mec_training'``
            its gradient on SimCLR's embeddings is ~10% of the SSL loss's (see
            :meth:`gradient_shares`; the configs set per-algorithm values). The paper's
            Table 6 best, 0.01, is under the paper's own, unstated mu (0.2% here).
        lambda2: weight of L_comp in step 2 (default 0.2, ~10%; paper's Table 6: 0.1).
        meta_grad: ``'second_order'``, ``'finite_difference'`` or ``'first_order'``.
        virtual_lr: the virtual step's learning rate; None takes the base optimizer's
            current learning rate of each parameter (schedulers included). Set it with
            LARS-type optimizers, whose effective step is not ``lr * grad``.
        order: Taylor order of the MEC series (4).
        eps_sq: MEC's squared decoding error (64).
        mec_scale: ``'mec_training'`` (default): mu = 1 / (m lambda), the MEC authors'
            training coefficient (their code divides the trace by the batch size and
            multiplies by 1/lambda, keeping mu = (m + d)/2 for reporting the coding
            length); its first-order term is minus the mean cosine similarity.
            ``'coding_length'``: mu = (m + d) / 2, MEC's coding-length coefficient,
            (m + d) d / (2 eps^2) times larger (160x for m = 32, d = 128). The MCR
            paper states neither.
        lam_warmup_epochs: 1/lambda goes from 8/lambda to 1/lambda over these epochs
            (MEC's schedule); 0 disables.
        lam_warmup_iters: the same in iterations (overrides the epochs).
        fd_epsilon: DARTS' 0.01: the finite-difference step is fd_epsilon / ||eta v||.
        meta_interval: run step 2 (and update xi) every this many iterations; the other
            iterations are step 1 alone, at the base algorithm's cost plus CompMod's
            forward. 1 (every iteration) is Algorithm 1; larger values trade meta
            updates for speed.
        data_preprocessor: used only when the algorithm has none.
    """

    optim_groups = {'base': 'algorithm', 'meta': 'comp_mod'}

    def __init__(self, algorithm: Union[dict, nn.Module], comp_mod: dict,
                 lambda1: float = 0.5, lambda2: float = 0.2,
                 meta_grad: str = 'second_order', virtual_lr: Optional[float] = None,
                 order: int = 4, eps_sq: float = 64.0, mec_scale: str = 'mec_training',
                 lam_warmup_epochs: float = 10,
                 lam_warmup_iters: Optional[int] = None, fd_epsilon: float = 0.01,
                 meta_interval: int = 1, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if meta_grad not in META_GRADS:
            raise ValueError(f'meta_grad must be one of {META_GRADS}, got {meta_grad!r}')
        if isinstance(algorithm, nn.Module):
            self.algorithm = algorithm
        else:
            self.algorithm = MODELS.build(load_architecture_cfg(algorithm, data_preprocessor))
        self.data_preprocessor = self.algorithm.data_preprocessor
        self.comp_mod = comp_mod if isinstance(comp_mod, nn.Module) else CompMod(**comp_mod)
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.meta_grad, self.virtual_lr = meta_grad, virtual_lr
        self.order, self.eps_sq, self.fd_epsilon = order, eps_sq, fd_epsilon
        if mec_scale in _OLD_MEC_SCALES:
            raise ValueError(f'mec_scale={mec_scale!r} was renamed after its source: use '
                             f'{_OLD_MEC_SCALES[mec_scale]!r}')
        if mec_scale not in MEC_SCALES:
            raise ValueError(f'mec_scale must be one of {MEC_SCALES}, got {mec_scale!r}')
        self.mec_scale = mec_scale
        self.lam_warmup_epochs, self.lam_warmup_iters = lam_warmup_epochs, lam_warmup_iters
        if meta_interval < 1:
            raise ValueError(f'meta_interval must be >= 1, got {meta_interval}')
        self.meta_interval = int(meta_interval)
        self._iteration = 0  # train_step calls, outside a Runner
        for key in ('backbone', 'neck'):
            if getattr(self.algorithm, key, None) is None:
                raise ValueError(f'MCR needs an algorithm with a {key}; '
                                 f'{type(self.algorithm).__name__} has none')
        self.interleaved = type(self.algorithm).__name__ == 'SimCLR'
        self._tap = _Tap()
        self.algorithm.backbone.register_forward_hook(
            functools.partial(self._tap.record, 'backbone'))
        self.algorithm.neck.register_forward_hook(functools.partial(self._tap.record, 'neck'))

    # ---------------------------------------------------------------- parameters

    def base_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.algorithm.parameters() if p.requires_grad]

    def base_names(self) -> List[str]:
        return [n for n, p in self.algorithm.named_parameters() if p.requires_grad]

    def meta_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.comp_mod.parameters() if p.requires_grad]

    # ---------------------------------------------------------------- MEC lambda

    def _warmup_progress(self) -> float:
        if self.lam_warmup_iters == 0 or (not self.lam_warmup_iters
                                          and not self.lam_warmup_epochs):
            return 1.0
        hub = MessageHub.get_current_instance()
        it = hub.get_info('iter')
        if it is None:  # outside a Runner: no schedule to follow
            return 1.0
        total = self.lam_warmup_iters
        if total is None:
            max_iters, max_epochs = hub.get_info('max_iters'), hub.get_info('max_epochs')
            if not max_iters or not max_epochs:
                return 1.0
            total = self.lam_warmup_epochs * max_iters / max_epochs
        return it / max(total, 1)

    def mec_lambda_mu(self, z_hat: torch.Tensor, progress: Optional[float] = None):
        """(lambda, mu) of the MEC losses for this batch (``mec_scale``), at warm-up
        ``progress`` (None: the Runner's iteration; 1: after the warm-up)."""
        m, d = z_hat.shape
        lam, mu = mec_hparams(m, d, self.eps_sq)
        progress = self._warmup_progress() if progress is None else progress
        lam = mec_lambda_warmup(lam, progress)
        if self.mec_scale == 'mec_training':
            mu = 1.0 / (m * lam)
        return lam, mu

    # ---------------------------------------------------------------- forward pieces

    def _views(self, outputs):
        backbone, neck = outputs['backbone'], outputs['neck']
        calls = 1 if self.interleaved else 2
        if len(backbone) != calls or len(neck) != calls:
            raise RuntimeError(
                f'MCR expected {type(self.algorithm).__name__} to call its backbone and '
                f'neck {calls}x per step (once per view{", interleaved" * self.interleaved})'
                f' but saw {len(backbone)} backbone and {len(neck)} neck calls; MCR '
                'supports SimCLR, BYOL, BarlowTwins and algorithms shaped like them.')
        if self.interleaved:
            h, z = _pooled(backbone[0]), _first(neck[0])
            return h[0::2], h[1::2], z[0::2], z[1::2]
        h1, h2 = (_pooled(o) for o in backbone)
        z1, z2 = (_first(o) for o in neck)
        return h1, h2, z1, z2

    def _ssl_forward(self, inputs, data_samples, params=None, record=False):
        """L_ssl (MMEngine's sum of the algorithm's losses), its log vars and, with
        ``record``, the views' features. ``params`` (name -> tensor) runs the algorithm
        functionally on them, with copied buffers and frozen EMA targets."""
        tap = self._tap.recording() if record else _nullcontext()
        with tap as outputs:
            if params is None:
                losses = self.algorithm(inputs, data_samples, mode='loss')
            else:
                buffers = {n: b.clone() for n, b in self.algorithm.named_buffers()}
                with _frozen_averaged_models(self.algorithm):
                    losses = functional_call(self.algorithm, (params, buffers),
                                             (inputs, data_samples), dict(mode='loss'))
        loss, log_vars = self.algorithm.parse_losses(losses)
        views = self._views(outputs) if record else None
        self._tap.clear()
        return loss, log_vars, views

    def loss(self, inputs, data_samples) -> Dict[str, torch.Tensor]:
        """The single-level objective L_ssl + lambda1 L_mcr + lambda2 L_comp (for a
        plain forward; training uses the bi-level :meth:`train_step`)."""
        l_ssl, _, (h1, h2, z1, z2) = self._ssl_forward(inputs, data_samples, record=True)
        z_hat = self.comp_mod(h1, h2, z1, z2, self.comp_mod.sample_alpha(h1))
        lam, mu = self.mec_lambda_mu(z_hat)
        return dict(loss=l_ssl,
                    loss_mcr=self.lambda1 * mcr_loss(z_hat, [z1, z2], lam, mu, self.order),
                    loss_comp=self.lambda2 * comp_loss(z_hat, lam, mu, self.order))

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            self._check_distributed()
            return self.loss(inputs, data_samples)
        return self.algorithm(inputs, data_samples, mode=mode)

    def val_step(self, data):
        return self.algorithm.val_step(data)

    def test_step(self, data):
        return self.algorithm.test_step(data)

    def gradient_shares(self, inputs, data_samples,
                        progress: Optional[float] = None) -> Dict[str, float]:
        r"""How much the MCR terms pull on the embeddings, relative to the SSL loss.

        With :math:`z` the neck's outputs (every view's embedding):
        ``mcr`` = :math:`\|\nabla_z \lambda_1 \mathcal{L}_{mcr}\| / \|\nabla_z
        \mathcal{L}_{ssl}\|` (both act on :math:`\theta, \phi` through :math:`z`), and
        ``comp`` = :math:`\|\nabla_{\hat Z} \lambda_2 \mathcal{L}_{comp}\| /
        \|\nabla_z \mathcal{L}_{ssl}\|` (Frobenius norms; the fused embedding
        :math:`\hat Z` has the width of :math:`z`). A diagnostic: one extra forward and
        backward; no parameter, buffer (BN statistics) or EMA target is changed.
        ``progress``: MEC's lambda warm-up, as :meth:`mec_lambda_mu` (L_comp's first-order
        term is constant for unit rows, so its share grows with lambda: 1/8 of it at the
        start of the warm-up).
        """
        buffers = {n: b.clone() for n, b in self.algorithm.named_buffers()}
        try:
            with self._tap.recording() as outputs, _frozen_averaged_models(self.algorithm):
                losses = self.algorithm(inputs, data_samples, mode='loss')
            l_ssl, _ = self.algorithm.parse_losses(losses)
            necks = [_first(o) for o in outputs['neck']]
            h1, h2, z1, z2 = self._views(outputs)
            alpha = self.comp_mod.sample_alpha(h1)
            z_hat = self.comp_mod(h1, h2, z1, z2, alpha)
            lam, mu = self.mec_lambda_mu(z_hat, progress)
            l_mcr = self.lambda1 * mcr_loss(z_hat, [z1, z2], lam, mu, self.order)
            z_fused = self.comp_mod(*(t.detach() for t in (h1, h2, z1, z2)), alpha)
            l_comp = self.lambda2 * comp_loss(z_fused, lam, mu, self.order)

            def norm(loss, wrt):
                grads = torch.autograd.grad(loss, wrt, retain_graph=True, allow_unused=True)
                return torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None))

            base = norm(l_ssl, necks)
            return dict(mcr=float(norm(l_mcr, necks) / base),
                        comp=float(norm(l_comp, [z_fused]) / base))
        finally:
            self._tap.clear()
            with torch.no_grad():
                for n, b in self.algorithm.named_buffers():
                    b.copy_(buffers[n])

    # ---------------------------------------------------------------- the bi-level step

    def bilevel_step(self, inputs, data_samples, lrs: Union[float, Sequence[float]],
                     meta_step: bool = True) -> BilevelStep:
        """Steps 1 and 2 of Algorithm 1 without touching any parameter.

        Args:
            inputs, data_samples: the preprocessed batch (two views).
            lrs: the virtual step's learning rate, one per :meth:`base_parameters`
                entry or one for all.
            meta_step: False skips step 2 (``meta_grads`` all None).
        """
        names, theta, xi = self.base_names(), self.base_parameters(), self.meta_parameters()
        lrs = [float(lrs)] * len(theta) if isinstance(lrs, (int, float)) else list(lrs)
        lambda1, lambda2 = self.lambda1, self.lambda2
        unrolled = meta_step and lambda1 != 0 and self.meta_grad != 'first_order'

        # Step 1: g = grad_{theta, phi} (L_ssl + lambda1 L_mcr), xi fixed.
        l_ssl, log_vars, (h1, h2, z1, z2) = self._ssl_forward(inputs, data_samples,
                                                              record=True)
        alpha = self.comp_mod.sample_alpha(h1)
        z_hat = self.comp_mod(h1, h2, z1, z2, alpha)
        lam, mu = self.mec_lambda_mu(z_hat)
        l_mcr = mcr_loss(z_hat, [z1, z2], lam, mu, self.order)
        l_step1 = l_ssl + lambda1 * l_mcr if lambda1 != 0 else l_ssl
        second_order = unrolled and self.meta_grad == 'second_order'
        g = torch.autograd.grad(l_step1, theta, create_graph=second_order, allow_unused=True)
        g_mean = rank_mean([None if gi is None else gi.detach() for gi in g])

        # Step 2: grad_xi [L_ssl(theta_xi, phi_xi) + lambda2 L_comp].
        meta = [None] * len(xi)
        feats = [t.detach() for t in (h1, h2, z1, z2)]
        l_comp = comp_loss(self.comp_mod(*feats, alpha), lam, mu, self.order)
        if meta_step and lambda2 != 0:
            meta = _add(meta, torch.autograd.grad(lambda2 * l_comp, xi, allow_unused=True))
        virtual = None
        if unrolled:
            theta_v = [(p if gi is None else p - lr * gi).detach().requires_grad_(p.requires_grad)
                       for p, gi, lr in zip(theta, g_mean, lrs)]
            virtual, _, _ = self._ssl_forward(inputs, data_samples,
                                              params=dict(zip(names, theta_v)))
            v = rank_mean(torch.autograd.grad(virtual, theta_v, allow_unused=True))
            if second_order:
                meta = _add(meta, self._vjp_through_step(g, v, lrs, xi))
            else:
                meta = _add(meta, self._finite_difference(inputs, data_samples, names, theta,
                                                          v, lrs, xi, alpha, lam, mu))
        meta = rank_mean(meta) if meta_step else meta
        base = g_mean

        log_vars = dict(log_vars)
        log_vars.update(
            loss_ssl=l_ssl.detach(), loss_mcr=(lambda1 * l_mcr).detach(),
            loss_comp=(lambda2 * l_comp).detach(), mec_lambda=torch.tensor(lam))
        log_vars['loss'] = (l_step1 + lambda2 * l_comp).detach()
        if virtual is not None:
            log_vars['virtual_ssl'] = virtual.detach()
        return BilevelStep(base, meta, log_vars)

    @staticmethod
    def _vjp_through_step(g, v, lrs, xi):
        """d L_ssl(theta - lr g(xi)) / d xi = -(dg/dxi)^T (lr v)."""
        outputs, cotangents = [], []
        for gi, vi, lr in zip(g, v, lrs):
            if gi is not None and vi is not None and gi.requires_grad and lr != 0:
                outputs.append(gi)
                cotangents.append(-lr * vi)
        if not outputs:
            return [None] * len(xi)
        return torch.autograd.grad(outputs, xi, grad_outputs=cotangents, allow_unused=True)

    def _finite_difference(self, inputs, data_samples, names, theta, v, lrs, xi, alpha,
                           lam, mu):
        """DARTS' central difference of grad_xi lambda1 L_mcr along u = lr v."""
        u = [None if vi is None or lr == 0 else lr * vi for vi, lr in zip(v, lrs)]
        norm = torch.sqrt(sum((ui.double() ** 2).sum() for ui in u if ui is not None))
        if not norm > 0:
            return [None] * len(xi)
        eps = self.fd_epsilon / float(norm)
        grads = []
        for sign in (1.0, -1.0):
            params = {n: (p if ui is None else p.detach() + sign * eps * ui)
                      for n, p, ui in zip(names, theta, u)}
            with torch.no_grad():
                _, _, (h1, h2, z1, z2) = self._ssl_forward(inputs, data_samples, params=params,
                                                           record=True)
            z_hat = self.comp_mod(h1, h2, z1, z2, alpha)
            l_mcr = mcr_loss(z_hat, [z1, z2], lam, mu, self.order)
            grads.append(torch.autograd.grad(self.lambda1 * l_mcr, xi, allow_unused=True))
        return [None if a is None else -(a - b) / (2 * eps) for a, b in zip(*grads)]

    # ---------------------------------------------------------------- MMEngine entry point

    def train_step(self, data, optim_wrapper: OptimWrapperDict) -> Dict[str, torch.Tensor]:
        base_wrapper, meta_wrapper = self._wrappers(optim_wrapper)
        self._check_distributed()
        for wrapper in (base_wrapper, meta_wrapper):
            _init_counts(wrapper, self)
        it = MessageHub.get_current_instance().get_info('iter')
        it = self._iteration if it is None else it
        self._iteration += 1
        with base_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            if it == 0:
                self._log_gradient_shares(data['inputs'], data['data_samples'])
            step = self.bilevel_step(data['inputs'], data['data_samples'],
                                     self._virtual_lrs(base_wrapper),
                                     meta_step=it % self.meta_interval == 0)
        _apply_grads(base_wrapper, self.base_parameters(), step.base_grads)
        _apply_grads(meta_wrapper, self.meta_parameters(), step.meta_grads)
        return step.log_vars

    def _log_gradient_shares(self, inputs, data_samples):
        now = self.gradient_shares(inputs, data_samples)
        after = self.gradient_shares(inputs, data_samples, progress=1.0)
        print_log(f"MCR gradient shares on the first batch: lambda1*L_mcr {after['mcr']:.1%} "
                  f"and lambda2*L_comp {after['comp']:.1%} of L_ssl's gradient on the "
                  f"embeddings at MEC's full lambda ({now['mcr']:.1%} and {now['comp']:.1%} "
                  f"at this iteration's warm-up lambda); lambda1={self.lambda1}, "
                  f'lambda2={self.lambda2}, mec_scale={self.mec_scale!r}', logger='current')
        self.first_gradient_shares = dict(warmed_up=after, first_iteration=now)

    def _check_distributed(self):
        """Several processes need MCRDataParallel: MMEngine's default DDP wrapper would
        skip :meth:`train_step` and train the single-level :meth:`loss`."""
        if get_world_size() > 1 and not getattr(self, '_mcr_data_parallel', False):
            raise RuntimeError(
                "MCR in several processes needs its own wrapper: add model_wrapper_cfg = "
                "dict(type='MCRDataParallel') to the config (DDP's reducer cannot see the "
                'gradients of the bi-level step)')

    @staticmethod
    def _wrappers(optim_wrapper):
        if not isinstance(optim_wrapper, OptimWrapperDict) or not {'base', 'meta'} <= set(
                optim_wrapper.keys()):
            raise TypeError(
                "MCR updates two parameter sets and needs optim_wrapper=dict(constructor="
                "'MCROptimWrapperConstructor', base=dict(...), meta=dict(...)) (an "
                f'OptimWrapperDict with keys base and meta); got {type(optim_wrapper).__name__}')
        return optim_wrapper['base'], optim_wrapper['meta']

    def _virtual_lrs(self, wrapper: OptimWrapper) -> List[float]:
        params = self.base_parameters()
        if self.virtual_lr is not None:
            return [float(self.virtual_lr)] * len(params)
        lr_of = {id(p): group['lr'] for group in wrapper.optimizer.param_groups
                 for p in group['params']}
        return [float(lr_of.get(id(p), 0.0)) for p in params]


@MODEL_WRAPPERS.register_module()
class MCRDataParallel(nn.Module):
    """Data parallelism for :class:`MCR` (``model_wrapper_cfg=dict(type='MCRDataParallel')``).

    Rank 0's parameters and buffers are broadcast once; from then on every rank applies
    the same averaged gradients (MCR's :meth:`~MCR.train_step` averages them), so the
    replicas stay equal without DDP's reducer, which cannot see gradients taken with
    ``torch.autograd.grad``. SyncBN layers are reverted to per-rank BN (SyncBN's
    backward is not twice differentiable, and not available on CPU).
    """

    def __init__(self, module: 'MCR', **kwargs):
        super().__init__()
        if not isinstance(module, MCR):
            raise TypeError(f'MCRDataParallel wraps an MCR model, got {type(module).__name__}')
        self.module = revert_sync_batchnorm(module)
        self.module._mcr_data_parallel = True
        if torch_dist.is_available() and torch_dist.is_initialized():
            with torch.no_grad():
                for tensor in [*self.module.parameters(), *self.module.buffers()]:
                    torch_dist.broadcast(tensor, src=0)

    def train_step(self, data, optim_wrapper):
        return self.module.train_step(data, optim_wrapper)

    def val_step(self, data):
        return self.module.val_step(data)

    def test_step(self, data):
        return self.module.test_step(data)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def _add(acc, grads):
    return [b if a is None else (a if b is None else a + b) for a, b in zip(acc, grads)]


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _init_counts(wrapper: OptimWrapper, model) -> None:
    """``OptimWrapperDict.initialize_count_status`` does nothing; give each wrapper the
    Runner's iteration counts once, for gradient accumulation."""
    if getattr(wrapper, '_max_counts', None) != -1:
        return
    hub = MessageHub.get_current_instance()
    it, max_iters = hub.get_info('iter'), hub.get_info('max_iters')
    if it is not None and max_iters:
        wrapper.initialize_count_status(model, it, max_iters)


def _apply_grads(wrapper: OptimWrapper, params, grads) -> None:
    """Step ``wrapper`` with precomputed gradients, through its public ``update_params``:
    the backward of sum(p * g) leaves exactly ``g`` in ``p.grad`` (1.0 * g), and the
    wrapper keeps its accumulation, clipping and counters."""
    pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
    if not pairs:
        return
    surrogate = sum((p * g.detach()).sum() for p, g in pairs)
    wrapper.update_params(surrogate)


# --------------------------------------------------------------------------- optimizer


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MCROptimWrapperConstructor:
    """One optimizer wrapper per parameter set of a model with ``optim_groups``
    (MCR: ``base`` = the wrapped algorithm, ``meta`` = CompMod), as an
    ``OptimWrapperDict``.

    Each value of ``optim_wrapper_cfg`` is an ordinary optimizer-wrapper config and
    may carry its own ``paramwise_cfg`` and ``constructor`` (default
    ``DefaultOptimWrapperConstructor``); parameter names in ``paramwise_cfg`` are
    relative to that set (``backbone.*`` for the algorithm, as in its stock config).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        if paramwise_cfg:
            raise ValueError('MCROptimWrapperConstructor takes paramwise_cfg inside each '
                             'optimizer wrapper (base=dict(..., paramwise_cfg=...)), not at '
                             'the top level')
        self.optim_wrapper_cfg = copy.deepcopy(dict(optim_wrapper_cfg))

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        if is_model_wrapper(model):
            model = model.module
        groups = getattr(model, 'optim_groups', None)
        if not groups:
            raise TypeError(f'{type(model).__name__} declares no optim_groups; '
                            'MCROptimWrapperConstructor is for MCR')
        if set(self.optim_wrapper_cfg) != set(groups):
            raise KeyError(f'optim_wrapper needs exactly the keys {sorted(groups)} '
                           f'besides constructor, got {sorted(self.optim_wrapper_cfg)}')
        wrappers = {}
        for key, cfg in self.optim_wrapper_cfg.items():
            cfg = copy.deepcopy(dict(cfg))
            constructor = cfg.pop('constructor', 'DefaultOptimWrapperConstructor')
            paramwise = cfg.pop('paramwise_cfg', None)
            cfg.setdefault('type', 'OptimWrapper')
            builder = OPTIM_WRAPPER_CONSTRUCTORS.build(
                dict(type=constructor, optim_wrapper_cfg=cfg, paramwise_cfg=paramwise))
            wrappers[key] = builder(getattr(model, groups[key]))
        return OptimWrapperDict(**wrappers)

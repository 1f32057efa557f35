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

MMEngine mapping: two optimizers, ``'base'`` (:math:`\theta, \phi`) and ``'meta'``
(:math:`\xi`), from :class:`~sslreg.models.mcr_optim.MCROptimWrapperConstructor` (config
example there); each step goes through the wrapper's own ``update_params``.

Several processes (``tools/dist_train.sh``, SLURM): set
``model_wrapper_cfg = dict(type='MCRDataParallel')`` (:mod:`sslreg.models.ddp`; the MCR
configs do). DDP's reducer cannot see gradients taken with ``torch.autograd.grad``, so MCR
averages them itself; the update is that of the global objective, the mean of the ranks'
objectives, as DDP's would be: :math:`g` is averaged over ranks before both the real and
the virtual step, :math:`v` is averaged, each rank takes :math:`(\partial
g_r/\partial\xi)^\top \bar v` through its own graph and the :math:`\xi`-gradients are
averaged. BatchNorm is per rank (SyncBN is reverted: not twice differentiable).

Limitations: no AMP; backbones whose last output is ``(N, C, H, W)`` or
``(N, C)``; algorithms that call their backbone and neck once per view (BYOL,
BarlowTwins, SimSiam) or once on the interleaved views (SimCLR; which of the two is
looked up in :data:`INTERLEAVED_ALGORITHMS`, or set by ``views_in_one_call``).
"""
from contextlib import nullcontext
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import torch
from mmengine.dist import get_world_size
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapperDict
from mmengine.registry import MODELS
from torch import nn
from torch.func import functional_call

from ..losses.distributed import rank_mean
from ..losses.mec import comp_loss, mcr_loss, mec_hparams, mec_lambda_warmup
from .comp_mod import FUSIONS, CompMod, ViewTap
from .mcr_diagnostics import measure_gradient_shares
from .mcr_optim import (MCROptimWrapperConstructor, apply_grads, base_and_meta, current_lrs,
                        frozen_averaged_models, init_counts, log_gradient_shares,
                        runner_progress)
from .regularized_model import load_architecture_cfg

__all__ = ['MCR', 'BilevelStep', 'measure_gradient_shares', 'INTERLEAVED_ALGORITHMS',
           'META_GRADS', 'MEC_SCALES', 'CompMod', 'FUSIONS', 'MCROptimWrapperConstructor']

META_GRADS = ('second_order', 'finite_difference', 'first_order')
MEC_SCALES = ('mec_training', 'coding_length')
#: The names these scales had before they were named after their source.
_OLD_MEC_SCALES = {'mec_code': 'mec_training', 'paper': 'coding_length'}
#: Algorithms (by class name, subclasses not included) that run their backbone and neck
#: once on both views interleaved sample by sample (``x1[0], x2[0], x1[1], ...``), as
#: mmpretrain's SimCLR does; any other runs them once per view (BYOL, BarlowTwins,
#: SimSiam). ``MCR(views_in_one_call=...)`` overrides this table.
INTERLEAVED_ALGORITHMS = ('SimCLR',)


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
        lambda1: weight of L_mcr in step 1. Default 0.5: ~10% of the SSL loss's gradient
            on SimCLR's embeddings at ``mec_scale='mec_training'`` (:meth:`gradient_shares`;
            the configs set per-algorithm values); the paper's Table 6 best, 0.01, is
            under its own, unstated mu (0.2% here).
        lambda2: weight of L_comp in step 2 (default 0.2, ~10%; paper's Table 6: 0.1).
        meta_grad: ``'second_order'``, ``'finite_difference'`` or ``'first_order'``.
        virtual_lr: the virtual step's learning rate; None takes the base optimizer's
            current learning rate of each parameter (schedulers included). Set it with
            LARS-type optimizers, whose effective step is not ``lr * grad``.
        order, eps_sq: Taylor order of the MEC series (4), MEC's squared decoding error (64).
        mec_scale: ``'mec_training'`` (default): mu = 1 / (m lambda), the MEC authors'
            training coefficient (their code divides the trace by the batch size and
            multiplies by 1/lambda); its first-order term is minus the mean cosine
            similarity. ``'coding_length'``: mu = (m + d) / 2, MEC's coding-length
            coefficient, (m + d) d / (2 eps^2) times larger (160x for m = 32, d = 128).
        lam_warmup_epochs, lam_warmup_iters: 1/lambda goes from 8/lambda to 1/lambda over
            these epochs (MEC's schedule), or iterations (override the epochs); 0 disables.
        fd_epsilon: DARTS' 0.01: the finite-difference step is fd_epsilon / ||eta v||.
        meta_interval: run step 2 (and update xi) every this many iterations, step 1 alone
            (the base algorithm's cost plus CompMod's forward) in between; 1 (every
            iteration) is Algorithm 1, larger values trade meta updates for speed.
        data_preprocessor: used only when the algorithm has none.
        views_in_one_call: True: the algorithm runs its backbone and neck once on both
            views interleaved sample by sample (SimCLR); False: once per view. None
            (default) looks its class name up in :data:`INTERLEAVED_ALGORITHMS`.
    """

    optim_groups = {'base': 'algorithm', 'meta': 'comp_mod'}

    def __init__(self, algorithm: Union[dict, nn.Module], comp_mod: dict,
                 lambda1: float = 0.5, lambda2: float = 0.2,
                 meta_grad: str = 'second_order', virtual_lr: Optional[float] = None,
                 order: int = 4, eps_sq: float = 64.0, mec_scale: str = 'mec_training',
                 lam_warmup_epochs: float = 10,
                 lam_warmup_iters: Optional[int] = None, fd_epsilon: float = 0.01,
                 meta_interval: int = 1, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None, views_in_one_call: Optional[bool] = None):
        super().__init__(init_cfg=init_cfg)
        _check_options(meta_grad, mec_scale, meta_interval, views_in_one_call)
        if isinstance(algorithm, nn.Module):
            self.algorithm = algorithm
        else:
            self.algorithm = MODELS.build(load_architecture_cfg(algorithm, data_preprocessor))
        self.data_preprocessor = self.algorithm.data_preprocessor
        self.comp_mod = comp_mod if isinstance(comp_mod, nn.Module) else CompMod(**comp_mod)
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.meta_grad, self.virtual_lr = meta_grad, virtual_lr
        self.order, self.eps_sq, self.fd_epsilon = order, eps_sq, fd_epsilon
        self.mec_scale = mec_scale
        self.lam_warmup_epochs, self.lam_warmup_iters = lam_warmup_epochs, lam_warmup_iters
        self.meta_interval = int(meta_interval)
        self._iteration = 0  # train_step calls, outside a Runner
        self._tap = ViewTap()
        self._tap.attach(self.algorithm)
        if views_in_one_call is None:
            views_in_one_call = type(self.algorithm).__name__ in INTERLEAVED_ALGORITHMS
        self.views_in_one_call = views_in_one_call

    def base_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.algorithm.parameters() if p.requires_grad]

    def base_names(self) -> List[str]:
        return [n for n, p in self.algorithm.named_parameters() if p.requires_grad]

    def meta_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.comp_mod.parameters() if p.requires_grad]

    def mec_lambda_mu(self, z_hat: torch.Tensor, progress: Optional[float] = None):
        """(lambda, mu) of the MEC losses for this batch (``mec_scale``), at warm-up
        ``progress`` (None: the Runner's iteration; 1: after the warm-up)."""
        m, d = z_hat.shape
        lam, mu = mec_hparams(m, d, self.eps_sq)
        if progress is None:
            progress = runner_progress(self.lam_warmup_iters, self.lam_warmup_epochs)
        lam = mec_lambda_warmup(lam, progress)
        if self.mec_scale == 'mec_training':
            mu = 1.0 / (m * lam)
        return lam, mu

    def _views(self, records):
        return self._tap.views(records, self.views_in_one_call, type(self.algorithm).__name__)

    def _ssl_forward(self, inputs, data_samples, params=None, record=False):
        """L_ssl (MMEngine's sum of the algorithm's losses), its log vars and, with
        ``record``, the views' features. ``params`` (name -> tensor) runs the algorithm
        functionally on them, with copied buffers and frozen EMA targets."""
        with self._tap.recording() if record else nullcontext() as records:
            if params is None:
                losses = self.algorithm(inputs, data_samples, mode='loss')
            else:
                buffers = {n: b.clone() for n, b in self.algorithm.named_buffers()}
                with frozen_averaged_models(self.algorithm):
                    losses = functional_call(self.algorithm, (params, buffers),
                                             (inputs, data_samples), dict(mode='loss'))
        loss, log_vars = self.algorithm.parse_losses(losses)
        views = self._views(records) if record else None
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

    def train(self, mode: bool = True):
        """Several processes without MCRDataParallel are refused here too, where
        MMEngine's train loop starts: a DDP wrapper's ``train_step`` never reaches
        :meth:`train_step` (it fails in MMEngine's ``optim_context`` first)."""
        if mode:
            _check_distributed(self)
        return super().train(mode)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            _check_distributed(self)
            return self.loss(inputs, data_samples)
        return self.algorithm(inputs, data_samples, mode=mode)

    def val_step(self, data):
        return self.algorithm.val_step(data)

    def test_step(self, data):
        return self.algorithm.test_step(data)

    def gradient_shares(self, inputs, data_samples,
                        progress: Optional[float] = None) -> Dict[str, float]:
        """How much the MCR terms pull on the embeddings, relative to the SSL loss:
        :func:`measure_gradient_shares` (a diagnostic; it changes no state)."""
        return measure_gradient_shares(self, inputs, data_samples, progress)

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
                meta = _add(meta, _vjp_through_step(g, v, lrs, xi))
            else:
                meta = _add(meta, _finite_difference(self, inputs, data_samples, names, theta,
                                                     v, lrs, xi, alpha, lam, mu))
        meta = rank_mean(meta) if meta_step else meta

        log_vars = dict(log_vars)
        log_vars.update(
            loss_ssl=l_ssl.detach(), loss_mcr=(lambda1 * l_mcr).detach(),
            loss_comp=(lambda2 * l_comp).detach(), mec_lambda=torch.tensor(lam))
        log_vars['loss'] = (l_step1 + lambda2 * l_comp).detach()
        if virtual is not None:
            log_vars['virtual_ssl'] = virtual.detach()
        return BilevelStep(g_mean, meta, log_vars)

    def train_step(self, data, optim_wrapper: OptimWrapperDict) -> Dict[str, torch.Tensor]:
        """MMEngine's entry point: :meth:`bilevel_step`, then each optimizer steps."""
        base_wrapper, meta_wrapper = base_and_meta(optim_wrapper)
        _check_distributed(self)
        for wrapper in (base_wrapper, meta_wrapper):
            init_counts(wrapper, self)
        it = MessageHub.get_current_instance().get_info('iter')
        it = self._iteration if it is None else it
        self._iteration += 1
        with base_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            if it == 0:
                log_gradient_shares(self, data['inputs'], data['data_samples'])
            lrs = current_lrs(base_wrapper, self.base_parameters(), self.virtual_lr)
            step = self.bilevel_step(data['inputs'], data['data_samples'], lrs,
                                     meta_step=it % self.meta_interval == 0)
        apply_grads(base_wrapper, self.base_parameters(), step.base_grads)
        apply_grads(meta_wrapper, self.meta_parameters(), step.meta_grads)
        return step.log_vars


# --------------------------------------------------------------------------- helpers


def _check_options(meta_grad, mec_scale, meta_interval, views_in_one_call):
    if meta_grad not in META_GRADS:
        raise ValueError(f'meta_grad must be one of {META_GRADS}, got {meta_grad!r}')
    if mec_scale in _OLD_MEC_SCALES:
        raise ValueError(f'mec_scale={mec_scale!r} was renamed after its source: use '
                         f'{_OLD_MEC_SCALES[mec_scale]!r}')
    if mec_scale not in MEC_SCALES:
        raise ValueError(f'mec_scale must be one of {MEC_SCALES}, got {mec_scale!r}')
    if meta_interval < 1:
        raise ValueError(f'meta_interval must be >= 1, got {meta_interval}')
    if views_in_one_call is not None and not isinstance(views_in_one_call, bool):
        raise ValueError(f'views_in_one_call must be None, True or False, got '
                         f'{views_in_one_call!r}')


#: The error of MCR in several processes without MCRDataParallel (raised by
#: :func:`_check_distributed` and by ``CPUDistributedDataParallel`` when given an MCR).
WRAPPER_NEEDED = ("MCR in several processes needs its own wrapper: add model_wrapper_cfg = "
                  "dict(type='MCRDataParallel') to the config (DDP's reducer cannot see the "
                  'gradients of the bi-level step)')


def _check_distributed(model: MCR):
    """Several processes need MCRDataParallel: MMEngine's default DDP wrapper would
    skip :meth:`MCR.train_step` (and with MCR's two optimizers fail in
    ``optim_context``, an error that does not say why)."""
    if get_world_size() > 1 and not getattr(model, '_mcr_data_parallel', False):
        raise RuntimeError(WRAPPER_NEEDED)


def _add(acc, grads):
    return [b if a is None else (a if b is None else a + b) for a, b in zip(acc, grads)]


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


def _finite_difference(model: MCR, inputs, data_samples, names, theta, v, lrs, xi, alpha,
                       lam, mu):
    """DARTS' central difference of grad_xi lambda1 L_mcr along u = lr v."""
    u = [None if vi is None or lr == 0 else lr * vi for vi, lr in zip(v, lrs)]
    norm = torch.sqrt(sum((ui.double() ** 2).sum() for ui in u if ui is not None))
    if not norm > 0:
        return [None] * len(xi)
    eps = model.fd_epsilon / float(norm)
    grads = []
    for sign in (1.0, -1.0):
        params = {n: (p if ui is None else p.detach() + sign * eps * ui)
                  for n, p, ui in zip(names, theta, u)}
        with torch.no_grad():
            _, _, (h1, h2, z1, z2) = model._ssl_forward(inputs, data_samples, params=params,
                                                        record=True)
        z_hat = model.comp_mod(h1, h2, z1, z2, alpha)
        l_mcr = mcr_loss(z_hat, [z1, z2], lam, mu, model.order)
        grads.append(torch.autograd.grad(model.lambda1 * l_mcr, xi, allow_unused=True))
    return [None if a is None else -(a - b) / (2 * eps) for a, b in zip(*grads)]

r"""MMEngine plumbing of :class:`~sslreg.models.mcr.MCR`: its two optimizers, and the
Runner state its train step reads (iteration counts, learning rates, EMA models, logs).

``optim_wrapper`` is an ``OptimWrapperDict`` with ``'base'`` (the wrapped algorithm:
:math:`\theta, \phi`, predictor heads included) and ``'meta'`` (CompMod: :math:`\xi`, or
:math:`\zeta`), built by :class:`MCROptimWrapperConstructor`::

    optim_wrapper = dict(
        constructor='MCROptimWrapperConstructor',
        base=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.06, momentum=0.9)),
        meta=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3)))
    param_scheduler = dict(base=[dict(type='CosineAnnealingLR', ...)], meta=[])

Each sub-config is an ordinary optimizer-wrapper config (``paramwise_cfg`` and
``constructor`` per key allowed). The Runner saves and resumes both optimizers and
both scheduler lists, and logs ``base.lr`` / ``meta.lr``. Each step is applied through
the wrapper's own ``update_params`` (:func:`apply_grads`: gradient accumulation,
clipping and its counters keep working).
"""
import copy
from contextlib import contextmanager
from typing import List, Optional, Sequence, Tuple

from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseAveragedModel
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from ..architecture import unwrap_model


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
        model = unwrap_model(model)
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


# --------------------------------------------------------------------------- train-step glue


def base_and_meta(optim_wrapper) -> Tuple[OptimWrapper, OptimWrapper]:
    """The ``'base'`` and ``'meta'`` wrappers of an MCR ``optim_wrapper``."""
    if not isinstance(optim_wrapper, OptimWrapperDict) or not {'base', 'meta'} <= set(
            optim_wrapper.keys()):
        raise TypeError(
            "MCR updates two parameter sets and needs optim_wrapper=dict(constructor="
            "'MCROptimWrapperConstructor', base=dict(...), meta=dict(...)) (an "
            f'OptimWrapperDict with keys base and meta); got {type(optim_wrapper).__name__}')
    return optim_wrapper['base'], optim_wrapper['meta']


def init_counts(wrapper: OptimWrapper, model) -> None:
    """``OptimWrapperDict.initialize_count_status`` does nothing; give each wrapper the
    Runner's iteration counts once, for gradient accumulation."""
    if getattr(wrapper, '_max_counts', None) != -1:
        return
    hub = MessageHub.get_current_instance()
    it, max_iters = hub.get_info('iter'), hub.get_info('max_iters')
    if it is not None and max_iters:
        wrapper.initialize_count_status(model, it, max_iters)


def apply_grads(wrapper: OptimWrapper, params, grads) -> None:
    """Step ``wrapper`` with precomputed gradients, through its public ``update_params``:
    the backward of sum(p * g) leaves exactly ``g`` in ``p.grad`` (1.0 * g), and the
    wrapper keeps its accumulation, clipping and counters."""
    pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
    if not pairs:
        return
    surrogate = sum((p * g.detach()).sum() for p, g in pairs)
    wrapper.update_params(surrogate)


def current_lrs(wrapper: OptimWrapper, params: Sequence[nn.Parameter],
                fixed: Optional[float] = None) -> List[float]:
    """The learning rate ``wrapper``'s optimizer applies to each of ``params`` now
    (schedulers included; 0 for a parameter it does not hold), or ``fixed`` for all."""
    if fixed is not None:
        return [float(fixed)] * len(params)
    lr_of = {id(p): group['lr'] for group in wrapper.optimizer.param_groups
             for p in group['params']}
    return [float(lr_of.get(id(p), 0.0)) for p in params]


def runner_progress(iters: Optional[int], epochs: Optional[float]) -> float:
    """Where the Runner is in a schedule of ``iters`` iterations, or ``epochs`` epochs
    when ``iters`` is None, as a fraction (may exceed 1); 1.0 with no schedule (both
    0/None) or outside a Runner."""
    if iters == 0 or (not iters and not epochs):
        return 1.0
    hub = MessageHub.get_current_instance()
    it = hub.get_info('iter')
    if it is None:  # outside a Runner: no schedule to follow
        return 1.0
    total = iters
    if total is None:
        max_iters, max_epochs = hub.get_info('max_iters'), hub.get_info('max_epochs')
        if not max_iters or not max_epochs:
            return 1.0
        total = epochs * max_iters / max_epochs
    return it / max(total, 1)


@contextmanager
def frozen_averaged_models(module: nn.Module):
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


def log_gradient_shares(model, inputs, data_samples) -> None:
    """Log (and keep in ``model.first_gradient_shares``) MCR's gradient shares on this
    batch, now and at MEC's full lambda; see ``MCR.gradient_shares``."""
    now = model.gradient_shares(inputs, data_samples)
    after = model.gradient_shares(inputs, data_samples, progress=1.0)
    print_log(f"MCR gradient shares on the first batch: lambda1*L_mcr {after['mcr']:.1%} "
              f"and lambda2*L_comp {after['comp']:.1%} of L_ssl's gradient on the "
              f"embeddings at MEC's full lambda ({now['mcr']:.1%} and {now['comp']:.1%} "
              f"at this iteration's warm-up lambda); lambda1={model.lambda1}, "
              f'lambda2={model.lambda2}, mec_scale={model.mec_scale!r}', logger='current')
    model.first_gradient_shares = dict(warmed_up=after, first_iteration=now)

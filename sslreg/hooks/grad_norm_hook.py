"""``GradNormHook``: the gradient norm, per stage and as an EMA, in every log.

Where the gradients are seen. MMEngine's ``OptimWrapper.update_params`` runs backward,
``step`` and ``zero_grad`` inside the model's ``train_step``, so ``after_train_iter``
only sees zeroed gradients. This hook registers a **step pre-hook on each optimizer**
(``torch.optim.Optimizer.register_step_pre_hook``): it runs inside ``optimizer.step()``,
after backward, before the update, whoever calls it (``update_params``, an SSL
algorithm's own ``train_step``, several optimizers of an ``OptimWrapperDict``). What is
measured, then:

* plain ``OptimWrapper``: the gradients the optimizer applies;
* ``clip_grad`` set on a wrapper: the optimizer would see clipped gradients, so for that
  wrapper the measurement moves to just before clipping (its ``_clip_grad`` is wrapped
  for the run): the norms are **before clipping**. MMEngine's own ``train/grad_norm``
  (which it writes when clipping by norm) is then the same number for a single wrapper;
  this hook's value, written later in the iteration, is the one logged;
* ``AmpOptimWrapper``: ``GradScaler.step`` unscales before calling ``optimizer.step``,
  so the pre-hook sees **unscaled** gradients (with ``clip_grad`` too: the wrapper
  unscales before clipping). For optimizers that unscale inside their own fused step
  (``_step_supports_amp_scaling``), the norms are divided by the ``grad_scale`` the
  scaler hands them. Steps the scaler skips (inf/NaN) call no step and log nothing;
  a non-finite norm is never logged;
* gradient accumulation: only iterations that step log (the accumulated gradients).

Logged each stepping iteration with ``runner.message_hub.update_scalar``, so they show
in the text log, TensorBoard/WandB and ``vis_data/scalars.json`` like any MMEngine
scalar. The logger writes every ``default_hooks.logger.interval``-th iteration (set 1 for
every one). MMEngine's ``LogProcessor`` would average any key containing 'grad_norm'
over its ``window_size`` (10) iterations before writing it (its default
``mean_pattern``); with ``raw=True`` (default) the hook adds ``method_name='current'``
entries for its keys to ``log_processor.custom_cfg`` for the run (keys the user
configured there are left alone), so the raw value of the logged iteration is written
and the EMA is not averaged again. The keys:

* ``train/grad_norm``: the global ``norm_type`` norm over every parameter of every
  optimizer that stepped (``torch.nn.utils.clip_grad_norm_``'s total norm);
* ``train/grad_norm_ema``: its exponential moving average
  (``ema = m * ema + (1 - m) * norm``, starting at the first value; kept in checkpoints);
* ``train/grad_norm/<stage>`` for each stage: the norm over the parameters under that
  module; parameters of no stage are ``other``, those of a ``RegularizedModel``'s
  regularizers (ρSIM's reconstructors) ``regularizers``;
* ``train/grad_norm/optim_<name>`` per optimizer of an ``OptimWrapperDict``.

Under DDP every rank holds the averaged gradients after backward: the local norm is the
global one. Sharded gradients (FSDP/ZeRO) are not supported.
"""
import math
from functools import partial
from typing import Dict, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS

from ..architecture import architecture_of, regularizers_of
from ..regularizers import resolve_layers

__all__ = ['GradNormHook']


def default_stages(model) -> list:
    """``['backbone.*', <other children>]`` for a model with a backbone, else ``['*']``."""
    if not hasattr(model, 'backbone'):
        return ['*']
    others = [n for n, _ in model.named_children() if n not in ('backbone', 'data_preprocessor')]
    return ['backbone.*'] + others


@HOOKS.register_module()
class GradNormHook(Hook):
    """Log the gradient norm: global, per stage and its EMA (module docstring).

    Args:
        stages: module paths/globs relative to the architecture (the model, or a
            ``RegularizedModel``'s architecture) whose parameters form one stage each;
            default: the children of ``backbone`` (``'backbone.*'``) and the model's
            other children (``neck``, ``head``, ...) if the model has a backbone, else
            the model's children. Stages without parameters are skipped; a parameter
            in nested stages counts for the innermost.
        ema_momentum: ``m`` of the EMA, in [0, 1).
        norm_type: the p of the p-norm (``inf`` for the max norm), as in
            ``clip_grad_norm_``.
        log_stages: also log the per-stage (and per-optimizer) norms.
        raw: write the raw value of the logged iteration, not MMEngine's window mean
            (module docstring).
    """

    priority = 'NORMAL'  # before LoggerHook (BELOW_NORMAL) reads the message hub

    def __init__(self, stages: Optional[Sequence[str]] = None, ema_momentum: float = 0.9,
                 norm_type: float = 2.0, log_stages: bool = True, raw: bool = True):
        if not 0 <= ema_momentum < 1:
            raise ValueError(f'ema_momentum must be in [0, 1), got {ema_momentum}')
        self.stages = [stages] if isinstance(stages, str) else stages
        self.ema_momentum, self.norm_type = float(ema_momentum), float(norm_type)
        self.log_stages, self.raw = log_stages, raw
        self._custom_cfg: list = []
        self.ema: Optional[float] = None
        self._handles: list = []
        self._patched: list = []
        self._label: Dict[int, str] = {}
        self._pending: Dict[str, Dict[str, torch.Tensor]] = {}
        self._before_clip: set = set()

    # ------------------------------------------------------------------ setup
    def before_train(self, runner):
        self.after_train(runner)  # idempotent if called twice
        arch = architecture_of(runner.model)
        patterns = self.stages or default_stages(arch)
        stage_names = sorted(resolve_layers(arch, patterns), key=len, reverse=True)
        self._label = {}
        for pname, p in arch.named_parameters():
            self._label[id(p)] = next(
                (s for s in stage_names if pname.startswith(s + '.')), 'other')
        for reg in regularizers_of(runner.model).values():
            for p in reg.parameters():
                self._label[id(p)] = 'regularizers'
        wrappers = (dict(runner.optim_wrapper.items())
                    if isinstance(runner.optim_wrapper, OptimWrapperDict)
                    else {'': runner.optim_wrapper})
        for name, ow in wrappers.items():
            self._handles.append(
                ow.optimizer.register_step_pre_hook(partial(self._pre_step, name)))
            if getattr(ow, 'clip_grad_kwargs', None):
                if hasattr(ow, '_clip_grad'):
                    ow._clip_grad = partial(self._measure_then_clip, name, ow, ow._clip_grad)
                    self._patched.append(ow)
                else:
                    runner.logger.warning(f'GradNormHook: {type(ow).__name__} clips gradients '
                                          'and has no _clip_grad: the norms logged are after '
                                          'clipping')
        keys = ['grad_norm', 'grad_norm_ema']
        if self.log_stages:
            keys += [f'grad_norm/{label}' for label in sorted(set(self._label.values()))]
            keys += ['grad_norm/other'] + [f'grad_norm/optim_{n}' for n in wrappers]
        self._log_raw(runner, keys)
        runner.logger.info(f'GradNormHook: stages {sorted(set(self._label.values()))}, '
                           f'optimizers {list(wrappers) if len(wrappers) > 1 else 1}')

    def _log_raw(self, runner, keys):
        processor = getattr(runner, 'log_processor', None)
        if not self.raw or processor is None or not hasattr(processor, 'custom_cfg'):
            return
        taken = {c.get('log_name', c.get('data_src')) for c in processor.custom_cfg}
        taken |= {c.get('data_src') for c in processor.custom_cfg}
        self._custom_cfg = [dict(data_src=k, method_name='current')
                            for k in dict.fromkeys(keys) if k not in taken]
        processor.custom_cfg.extend(self._custom_cfg)
        self._processor = processor

    def after_train(self, runner):
        for handle in self._handles:
            handle.remove()
        for ow in self._patched:
            del ow._clip_grad  # back to the class's method
        if self._custom_cfg:
            cfgs = self._processor.custom_cfg
            cfgs[:] = [c for c in cfgs if not any(c is mine for mine in self._custom_cfg)]
            self._custom_cfg = []
        self._handles, self._patched, self._pending = [], [], {}
        self._before_clip = set()

    # ------------------------------------------------------------------ measuring
    def _measure_then_clip(self, name, ow, clip):
        self._measure(name, ow.optimizer)
        self._before_clip.add(name)
        return clip()

    def _pre_step(self, name, optimizer, args, kwargs):
        if name in self._before_clip:  # measured before clipping already
            self._before_clip.discard(name)
            return None
        scale = getattr(optimizer, 'grad_scale', None)  # fused AMP-aware optimizers
        found_inf = getattr(optimizer, 'found_inf', None)
        if torch.is_tensor(found_inf) and float(found_inf) > 0:
            return None  # the step will be skipped
        self._measure(name, optimizer, float(scale) if torch.is_tensor(scale) else None)
        return None

    @torch.no_grad()
    def _measure(self, name: str, optimizer, scale: Optional[float] = None):
        """Per-label sums of |g|^p (max |g| for p=inf) of this optimizer's gradients;
        the last step of each optimizer in an iteration counts."""
        p = self.norm_type
        grads: Dict[str, list] = {}
        for group in optimizer.param_groups:
            for param in group['params']:
                if param.grad is not None:
                    g = param.grad.detach()
                    g = g.coalesce().values() if g.is_sparse else g
                    grads.setdefault(self._label.get(id(param), 'other'), []).append(g)
        acc = {}
        for label, gs in grads.items():
            norms = torch.stack([torch.linalg.vector_norm(g, p).double() for g in gs])
            if scale:
                norms = norms / scale
            acc[label] = norms.max() if math.isinf(p) else norms.pow(p).sum()
        self._pending[name] = acc

    # ------------------------------------------------------------------ logging
    def _norm(self, parts) -> float:
        parts = list(parts)
        if math.isinf(self.norm_type):
            return float(torch.stack(parts).max())
        return float(torch.stack(parts).sum() ** (1 / self.norm_type))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        pending, self._pending = self._pending, {}
        parts = [v for acc in pending.values() for v in acc.values()]
        if not parts:
            return  # no step this iteration (accumulation, or an AMP-skipped step)
        total = self._norm(parts)
        if not math.isfinite(total):
            return
        m = self.ema_momentum
        self.ema = total if self.ema is None else m * self.ema + (1 - m) * total
        hub = runner.message_hub
        hub.update_scalar('train/grad_norm', total)
        hub.update_scalar('train/grad_norm_ema', self.ema)
        if not self.log_stages:
            return
        labels = sorted({label for acc in pending.values() for label in acc})
        for label in labels:
            hub.update_scalar(f'train/grad_norm/{label}',
                              self._norm(acc[label] for acc in pending.values() if label in acc))
        if len(pending) > 1:
            for name, acc in pending.items():
                hub.update_scalar(f'train/grad_norm/optim_{name}', self._norm(acc.values()))

    # ------------------------------------------------------------------ checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.ema is not None:
            checkpoint.setdefault('meta', {})['grad_norm_ema'] = float(self.ema)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        ema = checkpoint.get('meta', {}).get('grad_norm_ema')
        if ema is not None:
            self.ema = float(ema)

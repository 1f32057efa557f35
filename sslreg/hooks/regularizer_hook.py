"""``RegularizerHook``: parameter-free regularizers on any model from ``custom_hooks``."""
from typing import Dict, Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS, MODELS

from ..architecture import architecture_of, is_regularized_model, regularizers_of, unwrap_model
from ..regularizers import Regularizer, collecting, find_regularizers, merge_terms, pop_terms
from ..regularizers.base import check_name, name_regularizers
from ..regularizers.report import grad_share_ready, report_lines

SCHEDULES = ('constant', 'linear')


@HOOKS.register_module()
class RegularizerHook(Hook):
    """Attach parameter-free regularizers (VCReg) to a model without touching its config,
    and collect the terms of regularizers inside the model (necks).

    Attaches in ``before_train`` (not ``before_run``: EMAHook deep-copies the model
    there). A forward pre-hook/hook pair on the model makes the regularizers record
    only during a training forward with ``mode='loss'`` and adds their terms to the
    returned loss dict, so MMEngine sums ``loss_<name>`` and logs everything.

    Args:
        regularizers: name -> regularizer dict, e.g.
            ``dict(vcreg=dict(type='VCReg', layers='backbone.layer*.*'))``. Empty: only
            collect the model's own regularizer necks.
        schedule: 'constant', or 'linear' warm-up over ``warmup_iters`` iterations of
            the loss weight of every regularizer: the hook's own and those in the model
            (a ``RegularizedModel``'s too, so a hook with no regularizers of its own can
            schedule the wrapper's).
        warmup_iters: length of the linear warm-up.

    At the start of training it logs the layers of each regularizer it collects (its own,
    and the model's necks unless a ``RegularizedModel`` collects them), one line each;
    after the first training iteration, once, their gradient shares
    ``||g_reg|| / ||g_downstream||`` at the regularized tensors
    (:attr:`sslreg.regularizers.VCReg.last_grad_share`; a ``RegularizedModel`` reports
    those it holds itself). Both from :func:`sslreg.regularizers.report.report_lines`.
    """

    priority = 'NORMAL'

    def __init__(self, regularizers: Optional[Dict[str, dict]] = None,
                 schedule: str = 'constant', warmup_iters: int = 0):
        if schedule not in SCHEDULES:
            raise ValueError(f'schedule must be one of {SCHEDULES}, got {schedule!r}')
        if schedule == 'linear' and warmup_iters <= 0:
            raise ValueError("schedule='linear' needs warmup_iters > 0")
        self.regularizer_cfgs = dict(regularizers or {})
        for name in self.regularizer_cfgs:
            check_name(name, 'RegularizerHook: regularizer')
        self.schedule, self.warmup_iters = schedule, warmup_iters
        self.regularizers: Dict[str, Regularizer] = {}
        self._collected: Dict[str, Regularizer] = {}
        self._scheduled = []
        self._handles = []
        self._collecting = None  # the open collecting() context of a training forward
        self._share_sources: Dict[str, Regularizer] = {}
        self._share_logged = False

    def before_train(self, runner):
        model = unwrap_model(runner.model)
        # Layer names are relative to the architecture, with or without the wrapper.
        wrapped = is_regularized_model(model)
        target = architecture_of(model)
        # loss names already in the model: a RegularizedModel's own, and necks'
        theirs = regularizers_of(model)
        necks = name_regularizers(find_regularizers(target), taken=theirs)
        both = sorted(set(self.regularizer_cfgs) & (set(theirs) | set(necks)))
        if both:
            raise ValueError(f'RegularizerHook: regularizer names {both} are also names of '
                             "regularizers in the model: their 'loss_<name>' keys would "
                             'overwrite each other; rename the hook\'s')
        for name, cfg in self.regularizer_cfgs.items():
            reg = MODELS.build(cfg)
            if reg.needs_probe or any(True for _ in reg.parameters()):
                what = ('has parameters' if any(True for _ in reg.parameters()) else
                        'needs a probe forward to size its state (e.g. the running mean of '
                        'demean=True) before training')
                raise ValueError(
                    f'RegularizerHook: {type(reg).__name__} ({name!r}) {what}, and a hook '
                    'runs after the optimizer and DDP are built. Declare it in the model: '
                    "model = dict(type='RegularizedModel', architecture=..., regularizers=...)")
            reg.attach(target)
            self.regularizers[name] = reg
        in_model = find_regularizers(model)  # the wrapper's own and necks
        self._share_logged = False
        self._scheduled = list(self.regularizers.values()) + list(in_model.values())
        if not self._scheduled:
            raise ValueError('RegularizerHook has nothing to do: no regularizers given and '
                             'none in the model (RegularizedModel, VCRegNeck, SIMNeck)')
        self._collected = dict(self.regularizers)
        if not wrapped:  # RegularizedModel collects the regularizers inside it itself
            self._collected.update(necks)
        if self._collected:
            self._handles = [
                model.register_forward_pre_hook(self._open, with_kwargs=True),
                model.register_forward_hook(self._close, with_kwargs=True)]
        # what it collects, it reports (a RegularizedModel reports what it holds itself)
        self._share_sources = dict(self._collected)
        for line in report_lines(self._collected, 'layers', target):
            runner.logger.info(line)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        scale = 1.0
        if self.schedule == 'linear':
            scale = min(1.0, (runner.iter + 1) / self.warmup_iters)
        for reg in self._scheduled:
            reg.weight_scale = scale

    def _open(self, module, args, kwargs):
        self._end_collecting()  # a forward that raised never reached _close
        if module.training and kwargs.get('mode') == 'loss':
            self._collecting = collecting(self._collected.values())
            self._collecting.__enter__()

    def _end_collecting(self) -> bool:
        """Leave the open :func:`collecting` context; whether one was open."""
        if self._collecting is None:
            return False
        self._collecting, context = None, self._collecting
        context.__exit__(None, None, None)
        return True

    def _close(self, module, args, kwargs, output):
        if not self._end_collecting():
            return None
        return merge_terms(output, pop_terms(self._collected))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._share_logged or not self._share_sources:
            return
        self._share_logged = True
        if grad_share_ready(self._share_sources):
            for line in report_lines(self._share_sources, 'grad_share'):
                runner.logger.info(line)

    def after_train(self, runner):
        self._end_collecting()
        for handle in self._handles:
            handle.remove()
        for reg in self.regularizers.values():
            reg.detach()
        self._handles = []

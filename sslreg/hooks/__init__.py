"""Training hooks of sslreg (registered in MMEngine's root ``HOOKS``).

* :class:`RegularizerHook` (``regularizer_hook.py``) -- parameter-free regularizers
  (VCReg) on any model from ``custom_hooks``; collects the terms of regularizer necks;
  schedules loss weights;
* :class:`GradNormHook` (``grad_norm_hook.py``) -- the gradient norm, per stage and as
  an EMA, in every log;
* :class:`RNGStateHook` (``rng_state_hook.py``) -- every random state into each
  checkpoint and back on resume (bit-exact resume; ``tools/train.py`` adds it);
* :class:`RunSummaryHook` (``run_summary_hook.py``) -- best metric, checkpoints and the
  last logged losses when training ends (``tools/train.py`` adds it).

``LayerFeatureHook`` (val/test) lives with the metric it feeds, in
``sslreg.evaluation``. Hooks import no model class: ``sslreg.architecture`` finds a
model's architecture (tests/test_import_rules.py).
"""
from .grad_norm_hook import GradNormHook
from .regularizer_hook import RegularizerHook
from .rng_state_hook import RNGStateHook
from .run_summary_hook import RunSummaryHook

__all__ = ['RegularizerHook', 'GradNormHook', 'RNGStateHook', 'RunSummaryHook']

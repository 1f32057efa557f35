"""Whether a checkpoint fits the model, checked before MMEngine loads it.

MMEngine's Runner loads ``load_from`` with ``strict=False``: keys the model lacks and
keys the checkpoint lacks are only logged, among the start-up lines, and a test of the
wrong checkpoint then reports the metric of a randomly initialised model.
``tools/test.py`` (its checkpoint) and ``tools/train.py`` (``load_from``, not resume)
call :func:`check_checkpoint_fit` on the built model first: a checkpoint that does not fit
is an error naming the missing, unexpected and mis-shaped keys (a few of each, and how
many), unless ``--non-strict`` (``tools/_cli.py``) asks for the frameworks' partial load
on purpose.

The checkpoint is read by MMEngine's own loader (local files, URLs, ...), under torch's
default safe loading (``sslreg.compat`` allow-lists what MMEngine writes).
"""
import logging
import os.path as osp
import re
from collections import Counter
from typing import Dict, List, NamedTuple, Tuple

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

__all__ = ['Fit', 'compare_state_dicts', 'describe', 'check_checkpoint_fit']

#: Keys shown per kind of misfit.
SHOWN = 5
#: How a RegularizedModel names its parts in its state dict.
WRAPPER_PREFIXES = ('architecture.', 'regularizers.', 'data_preprocessor.')


class Fit(NamedTuple):
    missing: List[str]      # in the model, not in the checkpoint
    unexpected: List[str]   # in the checkpoint, not in the model
    mismatched: List[Tuple[str, tuple, tuple]]  # (key, checkpoint shape, model shape)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def _shape(value) -> tuple:
    return tuple(getattr(value, 'shape', ()))


def compare_state_dicts(model_sd: Dict, ckpt_sd: Dict) -> Fit:
    """Missing, unexpected and mis-shaped keys of ``ckpt_sd`` for ``model_sd``."""
    missing = [k for k in model_sd if k not in ckpt_sd]
    unexpected = [k for k in ckpt_sd if k not in model_sd]
    mismatched = [(k, _shape(v), _shape(model_sd[k])) for k, v in ckpt_sd.items()
                  if k in model_sd and _shape(v) != _shape(model_sd[k])]
    return Fit(missing, unexpected, mismatched)


def _some(keys: List[str]) -> str:
    more = f', ... ({len(keys) - SHOWN} more)' if len(keys) > SHOWN else ''
    return ', '.join(keys[:SHOWN]) + more


def _by_prefix(keys: List[str]) -> str:
    """``(architecture.*: 122, regularizers.*: 84)``: where the keys are."""
    counts = Counter(k.split('.', 1)[0] for k in keys)
    return '(' + ', '.join(f'{p}.*: {n}' for p, n in counts.most_common()) + ')'


def _is_regularized(keys) -> bool:
    keys = list(keys)
    return bool(keys) and any(k.startswith('architecture.') for k in keys) and all(
        k.startswith(WRAPPER_PREFIXES) for k in keys)


def _hint(fit: Fit, model_sd: Dict, ckpt_sd: Dict, checkpoint: str) -> str:
    if _is_regularized(ckpt_sd) and not _is_regularized(model_sd):
        stripped = {k[len('architecture.'):] for k in ckpt_sd if k.startswith('architecture.')}
        found = sum(k in stripped for k in fit.missing)
        plain = osp.splitext(checkpoint)[0] + '_plain.pth'
        return (f'\nThis is an unstripped RegularizedModel checkpoint (architecture.* + '
                f'regularizers.* keys; {found} of the {len(fit.missing)} missing keys are '
                'there under architecture.*) and the config builds the plain architecture. '
                'Write the plain checkpoint and load that:\n'
                f'    python tools/strip_regularizers.py {checkpoint} {plain}')
    if _is_regularized(model_sd) and not _is_regularized(ckpt_sd):
        return ('\nThe config builds a RegularizedModel (architecture.* + regularizers.* keys) '
                'and this is a plain model checkpoint: evaluate it with the plain (baseline) '
                'config, or load it into the architecture only, as pretrained weights '
                "(model.architecture.init_cfg=dict(type='Pretrained', checkpoint=...)).")
    return ''


def describe(fit: Fit, model: nn.Module, checkpoint: str, hint: str = '') -> str:
    """The error text: counts and a few keys of each kind."""
    lines = [f'checkpoint {checkpoint} does not fit the model the config builds '
             f'({type(model).__name__}):']
    if fit.missing:
        lines.append(f'  missing in the checkpoint: {len(fit.missing)} keys '
                     f'{_by_prefix(fit.missing)}: {_some(fit.missing)}')
    if fit.unexpected:
        lines.append(f'  unexpected (not in the model): {len(fit.unexpected)} keys '
                     f'{_by_prefix(fit.unexpected)}: {_some(fit.unexpected)}')
    if fit.mismatched:
        shown = [f'{k} (checkpoint {list(a)}, model {list(b)})' for k, a, b in fit.mismatched]
        lines.append(f'  shape mismatch: {len(shown)} keys: {_some(shown)}')
    return '\n'.join(lines) + hint


def _checkpoint_state_dict(checkpoint: str) -> Dict:
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state_dict = loaded.get('state_dict', loaded) if isinstance(loaded, dict) else loaded
    if not isinstance(state_dict, dict):
        raise SystemExit(f'checkpoint {checkpoint} holds no state dict '
                         f'({type(state_dict).__name__})')
    # as MMEngine's Runner.load_checkpoint: a DDP-saved 'module.' prefix is removed
    return {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}


def _as_the_model_loads_it(module: nn.Module, state_dict: Dict) -> Dict:
    """``state_dict`` after ``module``'s load-state-dict pre-hooks, which torch runs inside
    ``load_state_dict`` before it matches keys: a ViT's hook resizes ``pos_embed`` to the
    model's grid or drops its CLS entry (197 -> 196 tokens), a hook may rename a legacy
    key. A shape that such a hook fixes is no misfit. The hooks edit a copy of the state
    dict; what a hook does to its module (TransferViT gives ``pos_embed`` the checkpoint's
    row count) is what the load that follows does anyway."""
    state_dict = dict(state_dict)
    for name, sub in module.named_modules():
        prefix = f'{name}.' if name else ''
        for hook in getattr(sub, '_load_state_dict_pre_hooks', {}).values():
            hook(state_dict, prefix, {}, True, [], [], [])
    return state_dict


def check_checkpoint_fit(model: nn.Module, checkpoint: str, strict: bool = True) -> Fit:
    """Compare ``checkpoint``'s state dict with ``model``'s (unwrapped from DDP).

    Misfit and ``strict``: ``SystemExit`` with :func:`describe`'s text and, for an
    unstripped ``RegularizedModel`` checkpoint on a plain config, the
    ``tools/strip_regularizers.py`` command. Not ``strict``: the same text as a warning,
    and the caller loads as MMEngine does (matching keys only).
    """
    module = model.module if is_model_wrapper(model) else model
    ckpt_sd = _as_the_model_loads_it(module, _checkpoint_state_dict(checkpoint))
    model_sd = module.state_dict()  # after the hooks: TransferViT's sizes its pos_embed
    fit = compare_state_dicts(model_sd, ckpt_sd)
    if fit.ok:
        return fit
    text = describe(fit, module, checkpoint, _hint(fit, model_sd, ckpt_sd, checkpoint))
    if strict:
        raise SystemExit(text + '\nTo load the matching keys anyway (MMEngine\'s non-strict '
                         'load), pass --non-strict.')
    print_log(text + '\n--non-strict: loading the matching keys only.', logger='current',
              level=logging.WARNING)
    return fit


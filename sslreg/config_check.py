"""Top-level config keys that look like misspelt Runner keys.

MMEngine's Runner reads a fixed set of top-level keys and ignores every other one: a
``custom_hook = [...]`` (for ``custom_hooks``) or a ``model_wraper_cfg`` is silently
dropped and the run trains without the hook or the wrapper. A config may define any
variables of its own (``max_epochs``, ``data_root``, ...), so an unknown key is reported
only when it is close to a key the Runner reads (:func:`difflib.get_close_matches`).
``sslreg.launch.load_config`` (tools/train.py, tools/test.py) logs the warnings.
"""
import difflib
import inspect
import logging
from typing import Iterable, List

from mmengine.logging import print_log
from mmengine.runner import Runner

__all__ = ['RUNNER_KEYS', 'COMMON_KEYS', 'suspicious_keys', 'warn_suspicious_keys']

#: Keys the Runner reads: ``Runner.__init__``'s arguments, and those ``Runner`` reads from
#: its config itself (MMEngine 0.10.7), and ``runner_type`` (``RUNNERS.build``).
RUNNER_KEYS = tuple(sorted(
    {name for name in inspect.signature(Runner.__init__).parameters if name not in ('self', 'cfg')}
    | {'model_wrapper_cfg', 'find_unused_parameters', 'sync_bn', 'compile',
       'activation_checkpointing', 'efficient_conv_bn_eval', 'runner_type'}))

#: Keys common in OpenMMLab configs that no Runner reads but that are not typos of one
#: (pipelines, dataset variables, test-time augmentation, imports).
COMMON_KEYS = ('custom_imports', 'train_pipeline', 'val_pipeline', 'test_pipeline',
               'tta_model', 'tta_pipeline', 'vis_backends', 'dataset_type', 'data_root',
               'backend_args', 'metainfo', 'train_dataset', 'val_dataset', 'test_dataset',
               'max_epochs', 'max_iters', 'val_interval', 'base_lr', 'norm_cfg', 'pretrained')

#: How close a key must be to a Runner key to be reported (difflib ratio).
CUTOFF = 0.8


def _variant(key: str, known: str) -> bool:
    """Whether ``key`` is a deliberate variant of ``known``, not a typo of it: an
    extension (``val_evaluator_dice``), or another word before the same suffix
    (``gallery_dataloader``, ``conv_cfg``)."""
    if key.startswith(known + '_'):
        return key[len(known) + 1:] not in ('cfg', 'config')  # optim_wrapper_cfg: a typo
    head, _, tail = key.partition('_')
    known_head, _, known_tail = known.partition('_')
    return bool(tail) and tail == known_tail and difflib.SequenceMatcher(
        None, head, known_head).ratio() < 0.75


def suspicious_keys(keys: Iterable[str], cutoff: float = CUTOFF) -> List[str]:
    """One message per top-level key that is not a Runner key but looks like one."""
    known = {k.lower(): k for k in RUNNER_KEYS}
    messages = []
    for key in keys:
        if key.startswith('_') or key in RUNNER_KEYS or key in COMMON_KEYS:
            continue
        close = [c for c in difflib.get_close_matches(key.lower(), list(known), n=2,
                                                       cutoff=cutoff)
                 if not _variant(key.lower(), c)]
        if close:
            names = ' or '.join(repr(known[c]) for c in close)
            messages.append(f'config key {key!r} is not read by MMEngine\'s Runner and is '
                            f'ignored: did you mean {names}?')
    return messages


def warn_suspicious_keys(cfg) -> List[str]:
    """Log :func:`suspicious_keys` of a config's top level as warnings; returns them."""
    messages = suspicious_keys(list(cfg.keys()))
    for message in messages:
        print_log(message, logger='current', level=logging.WARNING)
    return messages

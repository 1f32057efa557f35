"""``RunSummaryHook``: at the end of training, what one looks for first in a long log."""
import math
import os.path as osp
from numbers import Number
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS

from ..architecture import architecture_of, regularizers_of
from ..regularizers import find_regularizers
from ..regularizers.base import name_regularizers


def _number(value) -> Optional[float]:
    if torch.is_tensor(value) and value.numel() == 1:
        value = value.item()
    if isinstance(value, Number) and not isinstance(value, bool):
        return float(value)
    return None


def _higher_is_better(key: str) -> bool:
    return 'loss' not in key.lower()  # as CheckpointHook's rule for save_best='auto'


def _fmt(value: float, digits: int = 4) -> str:
    return f'{value:.{digits}g}' if math.isfinite(value) else str(value)


@HOOKS.register_module()
class RunSummaryHook(Hook):
    """Log, once training ends, a few lines that say how the run went::

        Run summary
          work_dir: /abs/wd
          best accuracy/top1 = 93.75 at epoch 3 (last evaluation, epoch 4, 93.12; ...)
          checkpoints: last /abs/wd/epoch_4.pth; best /abs/wd/best_accuracy_top1_epoch_3.pth
          last logged losses: loss 0.51, loss_task 0.47, loss_sim 0.036; regularizer
            statistics: vcreg_value 3.1 (means of the last 10 iterations, ...)
          logs: /abs/wd/20261201_131341 (TensorBoard: tensorboard --logdir .../vis_data)

    The best metric is ``metric``, else the checkpoint hook's ``save_best`` metric when
    it has one (its score and checkpoint, resume-safe: MMEngine keeps them in the
    message hub), else the first metric of the evaluations of this run; higher is
    better unless the name contains 'loss' (as ``save_best='auto'``). The best of the
    other metrics follow. ``tools/train.py`` adds this hook; in a config it is
    ``custom_hooks = [dict(type='RunSummaryHook', metric='mDice')]`` (``metric``
    optional).
    """

    priority = 'VERY_LOW'  # after CheckpointHook (also VERY_LOW, registered earlier)

    def __init__(self, metric: Optional[str] = None):
        self.metric = metric
        #: ``(epoch, iter, {metric: value})`` of each evaluation of this run.
        self.evaluations: List[Tuple[int, int, Dict[str, float]]] = []

    def before_train(self, runner):
        self.evaluations = []

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None):
        numbers = {k: v for k, v in ((k, _number(v)) for k, v in (metrics or {}).items())
                   if v is not None}
        if numbers:
            self.evaluations.append((runner.epoch, runner.iter, numbers))

    def after_train(self, runner):
        # rank 0 only, as MMEngine's own logging: under srun a non-zero rank that went
        # through the summary (the visualizer's backends) aborted at exit with
        # TensorBoard in the config ("terminate called without an active exception")
        if not is_main_process():
            return
        try:
            lines = self.summary_lines(runner)
        except Exception as err:  # a summary must not fail a finished training
            runner.logger.warning(f'RunSummaryHook: no run summary ({err!r})')
            return
        runner.logger.info('\n'.join(['Run summary'] + ['  ' + line for line in lines]))

    # ------------------------------------------------------------------ the lines
    def summary_lines(self, runner) -> List[str]:
        ckpt = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        return [f'work_dir: {osp.abspath(runner.work_dir)}', self._best_line(runner, ckpt),
                self._checkpoint_line(runner, ckpt), self._values_line(runner),
                self._logs_line(runner)]

    def _when(self, runner, epoch: int, it: int) -> str:
        by_epoch = 'Epoch' in type(runner.train_loop).__name__
        return f'epoch {epoch}' if by_epoch else f'iter {it}'

    def _best(self, key: str):
        """``(epoch, iter, best value)`` of ``key`` over this run's evaluations, or None."""
        history = [(e, i, m[key]) for e, i, m in self.evaluations if key in m]
        if not history:
            return None
        return (max if _higher_is_better(key) else min)(history, key=lambda row: row[2])

    def _best_line(self, runner, ckpt: Optional[CheckpointHook]) -> str:
        hub = runner.message_hub.runtime_info
        keys = list(getattr(ckpt, 'key_indicators', None) or []) if ckpt else []
        keys = [k for k in keys if k != 'auto']
        metrics = list(self.evaluations[-1][2]) if self.evaluations else []
        key = self.metric or (keys[0] if keys else metrics[0] if metrics else None)
        if key is None:
            return 'best metric: no evaluation in this run'
        best = self._best(key)
        value = best[2] if best else None
        where = f' at {self._when(runner, *best[:2])}' if best else ''
        # the checkpoint hook's best covers a resumed run's earlier evaluations too
        hub_key = 'best_score' if len(keys) == 1 else f'best_score_{key}'
        if key in keys and hub_key in hub and hub[hub_key] != value:
            value, where = hub[hub_key], ' (save_best, over all evaluations)'
        # no 'key: value' here: scripts take a metric's last 'key: value' of a log
        line = f'best {key} = {_fmt(value, 6) if value is not None else "-"}{where}'
        if self.evaluations:
            epoch, it, last = self.evaluations[-1]
            count = len(self.evaluations)
            line += (f' (last evaluation, {self._when(runner, epoch, it)}, '
                     f'{_fmt(last[key], 6) if key in last else "-"}; '
                     f'{count} evaluation{"s" if count != 1 else ""})')
        others = [(k, self._best(k)) for k in metrics if k != key]
        if others:
            line += '; best of the others: ' + ', '.join(
                f'{k} {_fmt(b[2], 6)}' for k, b in others if b is not None)
        return line

    def _checkpoint_line(self, runner, ckpt: Optional[CheckpointHook]) -> str:
        hub = runner.message_hub.runtime_info
        last = hub.get('last_ckpt') or (getattr(ckpt, 'last_ckpt', None) if ckpt else None)
        best = {k: v for k, v in hub.items() if k.startswith('best_ckpt') and v}
        parts = [f'last {last}' if last else 'no checkpoint saved']
        parts += [f'best {path}' if key == 'best_ckpt' else
                  f'best {key[len("best_ckpt_"):]} {path}' for key, path in best.items()]
        if ckpt is not None and getattr(ckpt, 'out_dir', None) and not last:
            parts.append(f'(the checkpoint hook writes to {ckpt.out_dir})')
        return 'checkpoints: ' + '; '.join(parts)

    def _regularizer_names(self, runner) -> List[str]:
        own = regularizers_of(runner.model)
        names = list(own) + list(name_regularizers(
            find_regularizers(architecture_of(runner.model)), taken=own))
        for hook in runner.hooks:  # RegularizerHook's own
            regs = getattr(hook, 'regularizers', None)
            if isinstance(regs, dict):
                names += [n for n in regs if n not in names]
        return names

    def _values_line(self, runner) -> str:
        # as the log lines show them: the mean over the log processor's window
        window = getattr(runner.log_processor, 'window_size', 10)
        window = window if isinstance(window, int) else 1
        scalars = {k[len('train/'):]: buf.mean(window)
                   for k, buf in runner.message_hub.log_scalars.items()
                   if k.startswith('train/')}
        losses = {k: v for k, v in scalars.items() if 'loss' in k}  # as parse_losses
        names = self._regularizer_names(runner)
        stats = {k: v for k, v in scalars.items() if k not in losses
                 and any(k.startswith(f'{n}_') for n in names)}
        if not losses and not stats:
            return 'last logged losses: none logged'
        def listed(values):
            return ', '.join(f'{k} {_fmt(float(v))}' for k, v in values.items())
        line = f'last logged losses (means of the last {window} iterations, as logged): '
        line += listed(losses)
        if stats:
            line += f'; regularizer statistics: {listed(stats)}'
        if names:
            line += f'; regularizers: {", ".join(names)}'
        return line

    def _logs_line(self, runner) -> str:
        line = f'logs: {osp.abspath(runner.log_dir)}'
        backends = getattr(runner.visualizer, '_vis_backends', {}) or {}
        tensorboard = next((b for b in backends.values()
                            if type(b).__name__ == 'TensorboardVisBackend'), None)
        if tensorboard is not None:
            line += (' (TensorBoard: tensorboard --logdir '
                     f'{osp.abspath(getattr(tensorboard, "_save_dir", runner.log_dir))})')
        return line

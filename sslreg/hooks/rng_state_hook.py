"""``RNGStateHook``: the random states a run depends on, in every checkpoint, back on resume.

MMEngine 0.10.7's checkpoint holds the model, optimizer, param schedulers, message hub
and ``meta`` (epoch, iter, seed), and ``Runner.resume`` puts those back. The sampler's
order then comes back by itself (``DefaultSampler`` shuffles with ``seed + epoch``,
``DistSamplerSeedHook`` sets the epoch; ``IterBasedTrainLoop`` skips the batches already
trained). What it does not carry is the state of the random generators: the resumed run
re-seeds them at build time, so augmentation in the main process (``num_workers=0``:
numpy and python ``random``), dropout and ρSIM's token sampling (torch, CPU and CUDA)
restart from the seed, and the run diverges at the first resumed iteration.

This hook takes those states at the end of each epoch (epoch loops) or iteration (iter
loops), writes them into each checkpoint (``checkpoint['rng_state']``: tensors, ints and
floats only, so the file still loads with ``torch.load(weights_only=True)``), and sets
them again right before the next batch is drawn: in the uninterrupted run (which makes
validation, run in between, neutral to the training stream) and, from the checkpoint,
in a resumed one. Both runs then draw the same numbers from there on. Also kept: the
state of every ``torch.Generator`` held as an attribute by a module of the model or of a
hook's ``regularizers``, and, in a distributed run, every rank's own states.

It also saves the seeds the train dataloader was built with (its sampler's and that of
MMEngine's ``worker_init_fn``) and gives them back on resume: with
``randomness=dict(seed=None)`` (mmpretrain's default) MMEngine builds the resumed run's
dataloader with a fresh seed before it reads the checkpoint's.

Assumed, as the demos have it: ``num_workers=0``, or workers that are not persistent
(MMEngine seeds each worker with ``seed + worker id`` whenever workers start, so they
replay by themselves). Persistent workers carry their own states across epochs, which no
checkpoint of the main process reaches: the hook warns then.
"""
import random
from functools import partial
from typing import Iterator, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from torch import nn

from ..architecture import unwrap_model

STATE_KEY = 'rng_state'


# ------------------------------------------------------------------ the states
def named_generators(runner) -> Iterator:
    """``(name, torch.Generator)`` held as attributes by modules of the model, or of the
    ``regularizers`` of a hook (``RegularizerHook``'s)."""
    roots = [('model', unwrap_model(runner.model))]
    for hook in runner.hooks:
        regs = getattr(hook, 'regularizers', None)
        if isinstance(regs, (dict, nn.ModuleDict)):
            roots += [(f'{type(hook).__name__}.{k}', m) for k, m in regs.items()
                      if isinstance(m, nn.Module)]
    for root, module in roots:
        for path, sub in module.named_modules():
            for attr, value in vars(sub).items():
                if isinstance(value, torch.Generator):
                    yield '.'.join(p for p in (root, path, attr) if p), value


def capture(runner) -> dict:
    """This process's random states, as the libraries give them."""
    return dict(torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                numpy=np.random.get_state(), python=random.getstate(),
                generators={n: g.get_state() for n, g in named_generators(runner)},
                loader=loader_seeds(_train_loader(runner)))


def restore(runner, state: dict):
    torch.set_rng_state(state['torch'])
    cuda = state['cuda']
    if cuda and torch.cuda.is_available():
        for index, device_state in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])
    generators = dict(named_generators(runner))
    for name, gen_state in state['generators'].items():
        if name in generators:
            generators[name].set_state(gen_state)


def to_checkpoint(state: dict) -> dict:
    """``capture()``'s states as tensors and plain numbers (safe loading takes them)."""
    kind, keys, pos, has_gauss, gauss = state['numpy']
    version, internal, gauss_next = state['python']
    return dict(torch=state['torch'], cuda=list(state['cuda']),
                numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                           has_gauss=int(has_gauss), gauss=float(gauss)),
                python=dict(version=version, internal=torch.tensor(internal, dtype=torch.int64),
                            gauss_next=gauss_next),
                generators=dict(state['generators']), loader=dict(state['loader']))


def from_checkpoint(saved: dict) -> dict:
    n, p = saved['numpy'], saved['python']
    return dict(torch=saved['torch'].cpu(), cuda=[t.cpu() for t in saved['cuda']],
                numpy=(n['kind'], n['keys'].cpu().numpy().astype(np.uint32), n['pos'],
                       n['has_gauss'], n['gauss']),
                python=(p['version'], tuple(p['internal'].tolist()), p['gauss_next']),
                generators={k: v.cpu() for k, v in saved['generators'].items()},
                loader=dict(saved.get('loader', {})))


# ------------------------------------------------------------------ the hook
class _RestoringIterator:
    """An iter loop's ``dataloader_iterator``: lets the loop's skip of already-trained
    batches pass, then sets the hook's states before each batch is drawn."""

    def __init__(self, iterator, hook, runner, skip: int):
        self.iterator, self.hook, self.runner, self.skip = iterator, hook, runner, skip

    def __iter__(self):
        return self

    def __next__(self):
        if self.skip > 0:
            self.skip -= 1
        else:
            self.hook.restore_pending(self.runner)
        return next(self.iterator)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save every random state in each checkpoint and restore it on resume, so a resumed
    run continues bit for bit as the uninterrupted one (module docstring).

    ``tools/train.py`` adds it; with a stock tool add
    ``custom_hooks=[dict(type='RNGStateHook')]``. Runs before ``CheckpointHook``.
    """

    priority = 'LOW'

    def __init__(self):
        self._pending: Optional[dict] = None  # the states to set before the next batch
        self._taken_at = -1                   # completed iterations when taken
        self._ranks: Optional[List[dict]] = None  # every rank's, in checkpoint form
        self._ranks_at = -1
        self._reseeded = False  # the train loader got the checkpoint's seeds on resume

    # ---------------------------------------------------------- taking
    def _take(self, runner, done: int, gather: bool):
        self._pending, self._taken_at = capture(runner), done
        if gather and get_world_size() > 1:
            self._ranks = all_gather_object(to_checkpoint(self._pending))
            self._ranks_at = done

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        saving = any(self._saves_at_this_iter(h, runner) for h in runner.hooks
                     if isinstance(h, CheckpointHook))
        if _is_iter_loop(runner) or saving:
            self._take(runner, runner.iter + 1, gather=saving)

    def after_train_epoch(self, runner):
        if not _is_iter_loop(runner):
            self._take(runner, runner.iter, gather=True)

    @staticmethod
    def _saves_at_this_iter(hook, runner) -> bool:
        return not hook.by_epoch and (
            hook.every_n_train_iters(runner, hook.interval, hook.save_begin)
            or (hook.save_last and hook.is_last_train_iter(runner)))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        done = checkpoint.get('meta', {}).get('iter')
        if self._ranks is not None and self._ranks_at == done:
            ranks = self._ranks
        elif self._pending is not None and self._taken_at == done:
            ranks = [to_checkpoint(self._pending)]
        else:  # e.g. a best checkpoint, saved after validation
            ranks = [to_checkpoint(capture(runner))]
        checkpoint[STATE_KEY] = dict(iter=done, world_size=len(ranks), ranks=ranks)

    # ---------------------------------------------------------- restoring
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return  # load_from: a new run from these weights, with its own randomness
        saved = checkpoint.get(STATE_KEY)
        if saved is None:
            runner.logger.warning('RNGStateHook: the checkpoint holds no random states '
                                  '(written without this hook): the resumed run draws '
                                  'from re-seeded generators and will not replay exactly')
            return
        ranks, rank, world = saved['ranks'], get_rank(), get_world_size()
        if len(ranks) != world:
            runner.logger.warning(f'RNGStateHook: the checkpoint has the random states of '
                                  f'{len(ranks)} processes, this run has {world}: every '
                                  'process takes those of rank 0')
        self._pending = from_checkpoint(ranks[rank] if len(ranks) == world else ranks[0])
        self._taken_at = saved['iter']
        self._reseeded = set_loader_seeds(runner.train_dataloader, self._pending['loader'])
        loader_len = len(runner.train_dataloader)
        if not _is_iter_loop(runner) and saved['iter'] % loader_len:
            runner.logger.warning('RNGStateHook: resuming an epoch loop from a checkpoint '
                                  'taken mid-epoch; MMEngine restarts the epoch from its '
                                  'first batch, so the run does not replay exactly')

    def before_train(self, runner):
        loader = runner.train_dataloader
        if getattr(loader, 'num_workers', 0) > 0 and getattr(loader, 'persistent_workers', False):
            runner.logger.warning(
                'RNGStateHook: persistent dataloader workers keep their random states across '
                'epochs, and no checkpoint holds them: a resumed run augments differently. '
                'For an exact resume use num_workers=0 or --no-persistent-workers.')
        if _is_iter_loop(runner):
            loop = runner.train_loop
            iterator = loop.dataloader_iterator
            if self._reseeded:  # built (workers started, indices drawn) with other seeds
                iterator = type(iterator)(loop.dataloader)
            loop.dataloader_iterator = _RestoringIterator(iterator, self, runner,
                                                          skip=runner.iter)

    def before_train_epoch(self, runner):
        if not _is_iter_loop(runner):
            self.restore_pending(runner)

    def restore_pending(self, runner):
        if self._pending is not None:
            restore(runner, self._pending)


def _is_iter_loop(runner) -> bool:
    return hasattr(runner.train_loop, 'dataloader_iterator')


def _train_loader(runner):
    """The train dataloader once the train loop is built (None before, or without one:
    a checkpoint saved outside training)."""
    return getattr(getattr(runner, '_train_loop', None), 'dataloader', None)


def _samplers(loader) -> list:
    found = [getattr(loader, 'sampler', None),
             getattr(getattr(loader, 'batch_sampler', None), 'sampler', None)]
    return [s for s in found if s is not None and isinstance(getattr(s, 'seed', None), int)]


def loader_seeds(loader) -> dict:
    """The seeds the train dataloader was built with: its sampler's (shuffle order) and
    that of MMEngine's ``worker_init_fn`` (a ``partial``)."""
    seeds = {}
    if loader is None:
        return seeds
    samplers = _samplers(loader)
    if samplers:
        seeds['sampler'] = int(samplers[0].seed)
    init = getattr(loader, 'worker_init_fn', None)
    if isinstance(init, partial) and isinstance(init.keywords.get('seed'), int):
        seeds['worker'] = int(init.keywords['seed'])
    return seeds


def set_loader_seeds(loader, seeds: dict) -> bool:
    """Give the rebuilt train dataloader the seeds of the checkpoint's run (with
    ``randomness=dict(seed=None)`` MMEngine builds it with a fresh seed before it reads
    the checkpoint's). Whether anything changed."""
    changed = False
    for sampler in _samplers(loader):
        if 'sampler' in seeds and sampler.seed != seeds['sampler']:
            sampler.seed, changed = seeds['sampler'], True
    init = getattr(loader, 'worker_init_fn', None)
    if ('worker' in seeds and isinstance(init, partial)
            and init.keywords.get('seed') != seeds['worker']):
        loader.worker_init_fn = partial(init.func, *init.args,
                                        **dict(init.keywords, seed=seeds['worker']))
        changed = True
    return changed


__all__ = ['RNGStateHook', 'capture', 'restore', 'to_checkpoint', 'from_checkpoint',
           'STATE_KEY']

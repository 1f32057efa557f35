"""Fixes that let the 2023-24 OpenMMLab stack run on today's torch, CPU included.

Each fix is small, named, and says why. ``apply()`` runs once when ``sslreg`` is
imported (so ``custom_imports=['sslreg']`` in a config is enough); the config-level
fixes are applied by ``tools/train.py`` / ``tools/test.py`` through
``fix_config_for_this_machine``.
"""
import os
import subprocess
import warnings

import torch
import torch.distributed as torch_dist

_applied = False

# HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, 'min') etc.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` inside safe loading, and only for
    ``HistoryBuffer``'s own statistics methods: allow-listing the real getattr would
    let a checkpoint reach any attribute of any allowed object."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and (name in _HISTORY_BUFFER_METHODS
                                 or name in HistoryBuffer._statistics_methods):
        return getattr(obj, name)
    raise torch.serialization.pickle.UnpicklingError(
        f'sslreg safe loading: this checkpoint asks for getattr({obj!r}, {name!r}); '
        'only HistoryBuffer statistics methods are allowed. Load it only if you trust it '
        '(torch.load(..., weights_only=False)).')


def _numpy_globals():
    import numpy as np
    try:  # numpy >= 2 moved the pickling helpers to numpy._core
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    found = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    # Old and new module names both occur in checkpoints written by either numpy.
    found += [(multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
              (multiarray.scalar, 'numpy.core.multiarray.scalar'),
              (multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
              (multiarray.scalar, 'numpy._core.multiarray.scalar')]
    # numpy >= 1.25 may pickle dtypes through their DType classes.
    for code in 'bBhHiIlLqQefdgFDG?':
        found.append(type(np.dtype(code)))
    return found


def allow_mmengine_checkpoints():
    """Safe loading of MMEngine checkpoints under torch >= 2.6.

    ``mmengine`` calls ``torch.load`` without ``weights_only``; torch >= 2.6 then uses
    safe loading and refuses the few non-tensor objects MMEngine writes (its
    MessageHub's ``HistoryBuffer`` with numpy arrays). We allow-list exactly those,
    and keep safe loading on for everything else.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    torch.serialization.add_safe_globals(
        [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')] + _numpy_globals())


def apply():
    """Apply the import-time fixes (idempotent)."""
    global _applied
    if _applied:
        return
    allow_mmengine_checkpoints()
    _applied = True


# ----------------------------------------------------------------- distributed on CPU
def _slurm_env():
    """What MMEngine's slurm launcher derives from SLURM_*: rank, world size and the
    first node of the allocation as master (MASTER_PORT kept if the user set it)."""
    node_list = os.environ['SLURM_NODELIST']
    addr = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1').strip()
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ.setdefault('MASTER_ADDR', addr or '127.0.0.1')
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


def _mpi_env():
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']


def init_dist_for_this_machine(launcher, timeout_s=1800):
    """Initialise torch.distributed for ``launcher``.

    With CUDA, MMEngine's own ``init_dist`` (nccl) does it. Without, MMEngine's
    launchers call ``torch.cuda.set_device`` and fail, so we set up the same
    environment and start ``gloo`` ourselves; MMEngine's Runner then finds the process
    group initialised and uses it.
    """
    if launcher == 'none' or torch_dist.is_initialized():
        return
    if torch.cuda.is_available():
        from mmengine.dist import init_dist
        init_dist(launcher)
        return
    if launcher == 'slurm':
        _slurm_env()
    elif launcher == 'mpi':
        _mpi_env()
    elif launcher != 'pytorch':
        raise ValueError(f"launcher must be one of none, pytorch, slurm, mpi; got {launcher!r}")
    import datetime
    torch_dist.init_process_group(backend='gloo', init_method='env://',
                                  timeout=datetime.timedelta(seconds=timeout_s))


def fix_config_for_this_machine(cfg):
    """Config-level fixes, applied by our train/test tools after merging CLI options.

    - DataLoader ``persistent_workers=True`` with ``num_workers=0`` raises in torch.
    - A config inheriting a ``mmpretrain::`` base gets ``_scope_`` stamped into its
      ``collate_fn`` dict and MMEngine 0.10.7 passes it on to the function (TypeError).
    - A param scheduler without ``end`` that begins where training ends is dropped
      (see ``_drop_schedulers_past_the_end``).
    - Without CUDA: mmcv's MMSyncBN -> torch's SyncBN (MMSyncBN cannot even be built
      without a process group), ``dist_cfg`` backend -> gloo, and
      a DDP wrapper that does not pass ``device_ids`` (see ``CPUDistributedDataParallel``).
    """
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field)
        if not loader:
            continue
        if loader.get('num_workers', 0) == 0 and loader.get('persistent_workers'):
            loader['persistent_workers'] = False
        collate = loader.get('collate_fn')
        if isinstance(collate, dict):
            collate.pop('_scope_', None)
    _drop_schedulers_past_the_end(cfg)
    if not torch.cuda.is_available():
        _replace_sync_bn(cfg.get('model'))
        env_cfg = cfg.get('env_cfg')
        if env_cfg and env_cfg.get('dist_cfg'):
            env_cfg['dist_cfg']['backend'] = 'gloo'
        if cfg.get('launcher', 'none') != 'none':
            wrapper = cfg.get('model_wrapper_cfg') or {}
            if wrapper.get('type', 'MMDistributedDataParallel') == 'MMDistributedDataParallel':
                wrapper = dict(wrapper, type='CPUDistributedDataParallel')
                cfg['model_wrapper_cfg'] = wrapper
        if cfg.get('sync_bn'):
            warnings.warn('sync_bn ignored: no CUDA device on this machine')
            cfg['sync_bn'] = None
    return cfg


def _replace_sync_bn(node):
    """MMSyncBN -> SyncBN anywhere in a (nested) config.

    torch's SyncBN is left as it is: built on CPU it normalizes like BN in one process,
    and MMEngine (one process) or ``CPUDistributedDataParallel`` (several) turn it into
    ``_BatchNormXd``, which takes (N, C) and (N, C, H, W) alike. Rewriting the config to
    'BN' instead would build ``BatchNorm2d``, which refuses the (N, C) features of
    mmpretrain's SSL necks."""
    if isinstance(node, dict):
        if node.get('type') == 'MMSyncBN':
            node['type'] = 'SyncBN'
        for value in node.values():
            _replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _replace_sync_bn(value)


def _drop_schedulers_past_the_end(cfg):
    """A param scheduler without ``end`` runs to the end of training: MMEngine fills in
    ``max_epochs`` (``max_iters`` when not ``by_epoch``) and raises when that is not
    after its ``begin``, e.g. the demos' cosine after a 1-epoch warmup in a
    ``train_cfg.max_epochs=1`` run. A phase with an explicit ``end`` that begins after
    training ends is simply never reached; the implicit one is treated alike: dropped,
    with a warning."""
    schedulers = cfg.get('param_scheduler')
    train_cfg = cfg.get('train_cfg') or {}
    if not schedulers or not isinstance(train_cfg, dict):
        return
    one = isinstance(schedulers, dict)
    kept = []
    for sched in [schedulers] if one else list(schedulers):
        by_epoch = sched.get('by_epoch', True)
        limit = train_cfg.get('max_epochs' if by_epoch else 'max_iters')
        if 'end' not in sched and limit is not None and sched.get('begin', 0) >= limit:
            warnings.warn(f"param_scheduler {sched.get('type')} begins at {sched.get('begin')}, "
                          f"where training ends ({limit} {'epochs' if by_epoch else 'iters'}): "
                          'not used')
            continue
        kept.append(sched)
    if one:
        if not kept:
            cfg['param_scheduler'] = None
    elif len(kept) != len(schedulers):
        cfg['param_scheduler'] = kept

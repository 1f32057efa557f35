"""What ``tools/train.py`` and ``tools/test.py`` share: config loading, the fixes of
``sslreg.compat``, distributed start-up. Kept in the package so both tools stay short."""
import logging
import os
import os.path as osp

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from . import compat
from .config_check import warn_suspicious_keys
from .hooks.rng_state_hook import RNGStateHook
from .hooks.run_summary_hook import RunSummaryHook


# The tools' command lines are in tools/_cli.py: parsed before this package is imported,
# so that --help answers without torch and OpenMMLab.


def load_config(path, cfg_options=None):
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    warn_suspicious_keys(cfg)  # custom_hook for custom_hooks: the Runner ignores it silently
    return cfg


def set_work_dir(cfg, config_path, work_dir=None):
    """CLI > the config's own ``work_dir`` > ``./work_dirs/<config name>`` (as stock)."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def default_collate_for_mmpretrain(cfg):
    """mmpretrain's own tools default every loader to ``default_collate`` (its data
    preprocessors expect stacked batches); mmseg/mmdet keep MMEngine's pseudo_collate."""
    if cfg.get('default_scope') != 'mmpretrain':
        return
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(field):
            cfg[field].setdefault('collate_fn', dict(type='default_collate'))


#: The hooks our tools add to every training run, unless the config has them already:
#: ``RNGStateHook`` (bit-exact ``--resume``, ``sslreg/hooks/rng_state_hook.py``) and
#: ``RunSummaryHook`` (best metric, checkpoints, last losses at the end).
TOOL_HOOKS = (RNGStateHook, RunSummaryHook)


def add_tool_hooks(cfg, hooks=TOOL_HOOKS):
    """Append each of ``hooks`` to ``cfg.custom_hooks`` unless it is there (by name or
    class)."""
    custom = list(cfg.get('custom_hooks') or [])
    for hook in hooks:
        if not any(isinstance(h, dict) and h.get('type') in (hook.__name__, hook)
                   for h in custom):
            custom.append(dict(type=hook.__name__))
    cfg.custom_hooks = custom


#: What ``quiet`` keeps off the console: MMEngine's config dump and hook-order table
#: (the log file keeps them; environment, warnings and training lines stay).
STARTUP_DUMPS = ('Config:\n', 'Hooks will be executed in the following order:')


class _DropStartupDumps(logging.Filter):
    def filter(self, record):
        return not (isinstance(record.msg, str) and record.msg.startswith(STARTUP_DUMPS))


def _quiet_console(runner_cls):
    """``runner_cls`` whose logger's console handler drops :data:`STARTUP_DUMPS`."""
    class QuietConsoleRunner(runner_cls):
        def build_logger(self, *args, **kwargs):
            logger = super().build_logger(*args, **kwargs)
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler:  # the console, not the file
                    handler.addFilter(_DropStartupDumps())
            return logger
    return QuietConsoleRunner


def build_runner(cfg, launcher, quiet=False):
    """Fix the config for this machine, start distributed, build the Runner. ``quiet``
    (the tools' ``--quiet``): the config dump and hook table go to the log file only."""
    cfg.launcher = launcher
    os.environ.setdefault('LOCAL_RANK', '0')
    compat.fix_config_for_this_machine(cfg)
    compat.init_dist_for_this_machine(launcher)
    if quiet:
        runner_cls = RUNNERS.get(cfg.runner_type) if 'runner_type' in cfg else Runner
        if runner_cls is not None:  # (one RUNNERS cannot get is built as below)
            runner = _quiet_console(runner_cls).from_cfg(cfg)
            runner.logger.info(f'--quiet: the config and the hook order are in {runner.log_dir}')
            return runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def finish_distributed():
    """End a distributed run cleanly: every rank waits for the others, then the process
    group is destroyed. Left to interpreter exit, its gloo worker threads can abort a rank
    that ends first ("terminate called without an active exception"; seen under srun on
    the rank that has no summary to write), failing a finished job."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

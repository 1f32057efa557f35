"""What ``tools/train.py`` and ``tools/test.py`` share: config loading, the fixes of
``sslreg.compat``, distributed start-up. Kept in the package so both tools stay short."""
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from . import compat


def add_common_args(parser):
    """The arguments train.py and test.py share, as in the frameworks' own tools."""
    parser.add_argument('--work-dir', help='the dir to save logs, models and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (MMEngine syntax)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_args(parser):
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_config(path, cfg_options=None):
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
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


def build_runner(cfg, launcher):
    """Fix the config for this machine, start distributed, build the Runner."""
    cfg.launcher = launcher
    os.environ.setdefault('LOCAL_RANK', '0')
    compat.fix_config_for_this_machine(cfg)
    compat.init_dist_for_this_machine(launcher)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)

"""The command lines of tools/train.py and tools/test.py.

Kept light on purpose: argparse and MMEngine's ``DictAction`` (``mmengine.config``,
which imports no torch) only, so that ``--help`` or a wrong argument answers at once;
torch, OpenMMLab and sslreg (``import sslreg`` registers everything, ~4 s) are imported
by the tools after the arguments are parsed.
"""
import os
import warnings

# mmengine and mmcv import pkg_resources, which setuptools < 82 (pinned: they need it)
# marks deprecated with one UserWarning per importing module: noise for our users.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from mmengine.config import DictAction  # noqa: E402  (after the filter: it imports them)


def add_common_args(parser):
    """The arguments train.py and test.py share, as in the frameworks' own tools."""
    parser.add_argument('--work-dir', help='the dir to save logs, models and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (MMEngine syntax)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--quiet', action='store_true',
                        help="keep MMEngine's config dump and hook-order table off the "
                        'console at start-up (they stay in the log file of the work dir; '
                        'environment, warnings and training lines are shown as usual)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def add_non_strict_arg(parser, what: str):
    """The ``--non-strict`` option of train.py / test.py (what
    ``sslreg.checkpoint_fit.check_checkpoint_fit(strict=not args.non_strict)`` reads;
    defined here so that building the parser imports no torch)."""
    parser.add_argument(
        '--non-strict', action='store_true',
        help=f'load {what} even when it does not fit the model (keys missing, unexpected or '
        'of another shape): only the matching keys are loaded, as MMEngine does by default. '
        'Without it such a checkpoint is an error naming the keys.')
    return parser


def parse_args(parser, argv=None):
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args

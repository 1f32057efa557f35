"""Grid sweeps over config keys: one config per point, run one after another, one table.

    python tools/sweep.py CONFIG --grid KEY=V1,V2,... [KEY=...] --out-dir DIR
        [--cfg-options K=V ...] [--dry-run | --tabulate-only] [--skip-done]
        [--metric accuracy/top1] [--launcher none|pytorch|slurm] [--command TEMPLATE]
        [-- extra tools/train.py arguments]
    python tools/sweep.py --preset sim-rho-lambda --out-dir DIR      # a shipped grid
    python tools/sweep.py --list-presets

KEY is an MMEngine ``--cfg-options`` key of CONFIG, e.g. ``model.regularizers.sim.rho``
for the rhoSIM configs (``model.regularizers.vcreg.alpha`` for the VCReg ones,
``model.neck.alpha`` for VCRegNeck, ``custom_hooks.0.regularizers.vcreg.beta`` for a
list entry); values are split at top-level commas and parsed as ``--cfg-options`` does
(``1e-3``, ``True``, ``None``, ``mse``, ``[1,2]``). The points are the Cartesian
product of the keys, first key slowest. A key's parent must exist in CONFIG (so a typo
is an error that lists the real keys there); its last component may be new (rhoSIM's
``kind`` comes from its preset, not from the config).

Writes into DIR:

* ``configs/<point>.py``: a few lines that inherit CONFIG (``_base_``) and set the
  point's keys, plus ``--cfg-options`` (applied to every point; e.g. a shorter
  schedule); a key inside a list sets the whole list, as MMEngine merges lists whole.
* ``work_dirs/<point>/``: each run's work dir; ``logs/<point>.log``: its console output.
* ``results.md`` and ``results.csv``: one row per point: its values, the last value of
  each val metric (the final evaluation, from the work dir's ``vis_data/scalars.json``),
  the best value of ``--metric`` and its step, and the run's status.
* ``sweep.json``: base config, grid, points, commands, return codes, seconds.

Runs are sequential, each ``python tools/train.py <point>.py --work-dir ... --launcher
L [extra args]``; ``--command`` replaces that with a template of ``{config}``,
``{work_dir}``, ``{name}``, ``{python}`` (``'bash tools/dist_train.sh {config} 8
--work-dir {work_dir}'``, or an ``sbatch``/``srun`` line). A failed point is recorded and
the sweep goes on (``--stop-on-error`` stops); the exit status is 1 when any failed.
``--dry-run`` writes and checks the configs (each loads with ``Config.fromfile``) and
prints the commands; ``--tabulate-only`` re-reads the work dirs (runs done elsewhere);
``--skip-done`` skips points whose earlier run succeeded.
"""
import argparse
import copy
import csv
import itertools
import json
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
import textwrap
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: name -> the base config, the grid and what it reproduces. The rhoSIM grids' values
#: are sslreg's choice around the paper's rho = 0.2, lambda = 5e-3 (the figure's exact
#: points are not in the material sslreg was built from); the VCReg grid is App. C.1's.
PRESETS = {
    'sim-rho': dict(
        config='configs/sim/cifar/resnet18_cifar100_rhosim.py',
        grid=['model.regularizers.sim.rho=0.05,0.1,0.2,0.3,0.5,0.75,1.0'],
        about="SIM Fig. 3: rhoSIM's sampling ratio rho, CIFAR-100 ResNet-18"),
    'sim-lambda': dict(
        config='configs/sim/cifar/resnet18_cifar100_rhosim.py',
        grid=['model.regularizers.sim.loss_weight=1e-4,1e-3,2e-3,5e-3,1e-2,2e-2,5e-2'],
        about='SIM Fig. 3: the loss weight lambda, CIFAR-100 ResNet-18'),
    'sim-rho-lambda': dict(
        config='configs/sim/cifar/resnet18_cifar100_rhosim.py',
        grid=['model.regularizers.sim.rho=0.1,0.2,0.5,1.0',
              'model.regularizers.sim.loss_weight=1e-3,5e-3,2e-2'],
        about='SIM Fig. 3: rho x lambda, CIFAR-100 ResNet-18'),
    'sim-loss-kind': dict(
        config='configs/sim/cifar/resnet18_cifar100_rhosim.py',
        grid=['model.regularizers.sim.kind=mse,l2,l1,smooth_l1,cos,kl,wasserstein',
              'model.regularizers.sim.normalize=True,False'],
        about='SIM Table 10: reconstruction loss kinds, standardized and unnormalized'),
    'vcreg-alpha-beta': dict(
        config='configs/vcreg/resnet50_vcreg_8xb32_in1k.py',
        grid=['model.regularizers.vcreg.alpha=0.16,0.32,0.64,1.28',
              'model.regularizers.vcreg.beta=0.01,0.02,0.04,0.08,0.16'],
        about='VCReg App. C.1: the alpha/beta grid, ImageNet ResNet-50'),
}

DEFAULT_COMMAND = '{python} tools/train.py {config} --work-dir {work_dir}'
DONE_MARK = 'sweep_done'


# ----------------------------------------------------------------------------- the grid
def split_values(text: str) -> List[str]:
    """``'a,[1,2],(3,4),"x,y"'`` -> ``['a', '[1,2]', '(3,4)', '"x,y"']``."""
    parts, depth, quote, cur = [], 0, None, ''
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in '\'"':
            quote = ch
        elif ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
        elif ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
            continue
        cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_value(text: str):
    """One value as MMEngine's ``--cfg-options`` parses it (numbers, bools, None,
    strings, ``[..]`` / ``(..)``); quotes around a string are removed."""
    from mmengine.config import DictAction
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
        return text[1:-1]
    return DictAction._parse_iterable(text)


def parse_grid(items: Sequence[str]) -> List[Tuple[str, list]]:
    grid = []
    for item in items:
        key, sep, values = item.partition('=')
        key = key.strip()
        if not sep or not key or not values.strip():
            raise SystemExit(f'--grid {item!r}: expected KEY=V1,V2,...')
        if key in dict(grid):
            raise SystemExit(f'--grid: key {key!r} given twice')
        grid.append((key, [parse_value(v) for v in split_values(values)]))
    return grid


def parse_options(items: Optional[Sequence[str]]) -> Dict[str, object]:
    options = {}
    for item in items or ():
        key, sep, value = item.partition('=')
        if not sep:
            raise SystemExit(f'--cfg-options {item!r}: expected KEY=VALUE')
        options[key.strip()] = parse_value(value.strip())
    return options


def _child(node, part):
    if isinstance(node, dict):
        return node[part] if part in node else KeyError
    if isinstance(node, (list, tuple)) and re.fullmatch(r'-?\d+', part):
        index = int(part)
        return node[index] if -len(node) <= index < len(node) else KeyError
    return KeyError


def check_key(cfg: dict, key: str):
    """Every component of ``key`` but the last must exist in ``cfg``."""
    node, parts = cfg, key.split('.')
    for i, part in enumerate(parts[:-1]):
        child = _child(node, part)
        if child is KeyError or not isinstance(child, (dict, list, tuple)):
            where = '.'.join(parts[:i]) or 'the config'
            if isinstance(node, dict):
                have = f'its keys: {sorted(map(str, node))}'
            else:
                have = f'it is a list of {len(node)}'
            what = 'is not a dict or list' if child is not KeyError else 'does not exist'
            raise SystemExit(f"grid key {key!r}: {'.'.join(parts[:i + 1])!r} {what} in "
                             f'{where} ({have})')
        node = child
    if isinstance(node, (list, tuple)) and _child(node, parts[-1]) is KeyError:
        raise SystemExit(f'grid key {key!r}: {parts[-1]!r} is not an index of the list '
                         f"{'.'.join(parts[:-1])!r} (length {len(node)})")


def points_of(grid: List[Tuple[str, list]]) -> List[Dict[str, object]]:
    keys = [k for k, _ in grid]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in grid))]


def short_names(keys: Sequence[str]) -> Dict[str, str]:
    """The shortest dotted suffix of each key that tells it from the others."""
    names = {}
    for key in keys:
        parts = key.split('.')
        for n in range(1, len(parts) + 1):
            suffix = '.'.join(parts[-n:])
            if all(not k.endswith('.' + suffix) and k != suffix for k in keys if k != key):
                names[key] = suffix
                break
        else:
            names[key] = key
    return names


def _slug(value) -> str:
    text = value if isinstance(value, str) else repr(value)
    return re.sub(r'[^A-Za-z0-9._+-]+', '-', text).strip('-') or 'x'


def point_name(index: int, point: Dict[str, object], names: Dict[str, str]) -> str:
    return f'{index:02d}_' + '_'.join(f'{names[k].replace(".", "_")}-{_slug(v)}'
                                       for k, v in point.items())


# ------------------------------------------------------------------ the point's config
def _plain(value):
    from mmengine.config import ConfigDict
    if isinstance(value, ConfigDict):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def overrides(cfg: dict, merged: dict, options: Dict[str, object]) -> dict:
    """Nested dict of ``options`` to merge into ``cfg`` (a path through a list sets the
    whole list, taken from ``merged``, since MMEngine replaces lists when merging)."""
    out: dict = {}
    for key, value in options.items():
        parts, node = key.split('.'), cfg
        path, leaf = parts, value
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part)
            if isinstance(node, (list, tuple)):
                path = parts[:i + 1]
                leaf = merged
                for p in path:
                    leaf = _child(leaf, p)
                leaf = _plain(leaf)
                break
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = leaf
    return out


def _source(value, indent: int = 0) -> str:
    """Python source of a config value: dicts as ``dict(...)`` where keys allow it."""
    pad = ' ' * (indent + 4)
    if isinstance(value, dict) and value and all(
            isinstance(k, str) and k.isidentifier() for k in value):
        items = [f'{k}={_source(v, indent + 4)}' for k, v in value.items()]
        one = 'dict(' + ', '.join(items) + ')'
        if len(one) + indent < 80:
            return one
        return 'dict(\n' + ''.join(f'{pad}{i},\n' for i in items) + ' ' * indent + ')'
    if isinstance(value, dict):
        return '{' + ', '.join(f'{_source(k)}: {_source(v, indent)}'
                               for k, v in value.items()) + '}'
    if isinstance(value, list):
        return '[' + ', '.join(_source(v, indent + 4) for v in value) + ']'
    if isinstance(value, tuple):
        return '(' + ', '.join(_source(v, indent + 4) for v in value) + \
            (',)' if len(value) == 1 else ')')
    return repr(value)


def base_reference(base: str, config_dir: str) -> str:
    """``base`` relative to the point's directory when both are in this checkout (the
    sweep dir moves with it), else absolute; a ``pkg::`` path as it is."""
    if '::' in base:
        return base
    base, config_dir = osp.abspath(base), osp.abspath(config_dir)
    if osp.commonpath([base, config_dir, ROOT]) == ROOT:
        return osp.relpath(base, config_dir).replace(os.sep, '/')
    return base


def point_config(base: str, config_dir: str, point: Dict[str, object],
                 common: Dict[str, object], cfg: dict, merged: dict, title: str) -> str:
    def comment(label, options):
        return textwrap.wrap(', '.join(f'{k}={v!r}' for k, v in options.items()), 86,
                             initial_indent=f'# {label}: ', subsequent_indent='#   ',
                             break_on_hyphens=False, break_long_words=False)

    lines = [f'# {title} (tools/sweep.py)'] + comment('point', point)
    if common:
        lines += comment('every point', common)
    lines.append(f'_base_ = [{base_reference(base, config_dir)!r}]')
    lines.append('')
    for key, value in overrides(cfg, merged, {**common, **point}).items():
        lines.append(f'{key} = {_source(value)}')
    return '\n'.join(lines) + '\n'


def load_base(base: str):
    from mmengine.config import Config
    if '::' in base:
        from mmengine.hub import get_config
        return get_config(base)
    return Config.fromfile(base)


# ------------------------------------------------------------------------- the results
def final_metrics(work_dir: str, metric: Optional[str]) -> dict:
    """``{'last': {key: value}, 'step': s, 'best': v, 'best_step': s}`` of a work dir's
    val records ({} when there are none)."""
    analysis = osp.join(ROOT, 'tools', 'analysis')
    if analysis not in sys.path:
        sys.path.insert(0, analysis)
    from metrics_table import NOT_METRICS  # the val-record reading of tools/analysis
    from plot_curves import load_records
    try:
        _, val = load_records(work_dir)
    except FileNotFoundError:
        return {}
    val = [r for r in val if any(k not in NOT_METRICS for k in r)]
    if not val:
        return {}
    last = {k: v for k, v in val[-1].items() if k not in NOT_METRICS}
    out = dict(last=last, step=val[-1].get('step'))
    key = metric or next(iter(last), None)
    scores = [(r[key], r.get('step')) for r in val if isinstance(r.get(key), (int, float))]
    if scores:
        lower = 'loss' in key.lower()  # as CheckpointHook's save_best='auto' rule
        best = (min if lower else max)(scores, key=lambda s: s[0])
        out.update(metric=key, best=best[0], best_step=best[1])
    return out


def _fmt(value) -> str:
    if value is None:
        return '–'
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value)


def tabulate(rows: List[dict], keys: Sequence[str], metric: Optional[str]) -> Tuple[str, list]:
    """Markdown table and CSV rows (header first) of the sweep's points."""
    names = short_names(keys)
    metrics = list(dict.fromkeys(m for r in rows for m in r['result'].get('last', {})))
    if metric and metric not in metrics:
        metrics.insert(0, metric)
    best_key = metric or (metrics[0] if metrics else None)
    header = (['point'] + [names[k] for k in keys] + metrics
              + ([f'best {best_key}', 'best step'] if best_key else []) + ['val step', 'status'])
    table = []
    for row in rows:
        res = row['result']
        cells = [row['name']] + [row['point'][k] for k in keys]
        cells += [res.get('last', {}).get(m) for m in metrics]
        if best_key:
            same = res.get('metric') == best_key
            cells += [res.get('best') if same else None, res.get('best_step') if same else None]
        cells += [res.get('step'), row['status']]
        table.append(cells)
    md = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    md += ['| ' + ' | '.join(_fmt(c) for c in cells) + ' |' for cells in table]
    return '\n'.join(md) + '\n', [header] + table


# ---------------------------------------------------------------------------- running
def command_for(args, config: str, work_dir: str, name: str) -> List[str]:
    template = args.command or DEFAULT_COMMAND
    fields = dict(config=shlex.quote(config), work_dir=shlex.quote(work_dir),
                  name=shlex.quote(name), python=shlex.quote(sys.executable))
    cmd = shlex.split(template.format(**fields))
    if not args.command and args.launcher != 'none':
        cmd += ['--launcher', args.launcher]
    return cmd + list(args.extra)


def run_point(cmd: List[str], log_path: str) -> int:
    with open(log_path, 'w') as log:
        log.write('$ ' + ' '.join(shlex.quote(c) for c in cmd) + '\n')
        log.flush()
        return subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode


def arg_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Arguments after "--" go to every tools/train.py run (e.g. -- --amp).')
    parser.add_argument('config', nargs='?', help='the base config (a preset names one)')
    parser.add_argument('--grid', nargs='+', default=[], metavar='KEY=V1,V2',
                        help='keys and their values; the points are their product')
    parser.add_argument('--preset', choices=sorted(PRESETS), help='a shipped grid (its '
                        'config unless CONFIG is given; --grid keys are added to it)')
    parser.add_argument('--list-presets', action='store_true')
    parser.add_argument('--out-dir', help='where configs, work dirs, logs and tables go')
    parser.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE',
                        help='set in every point (e.g. a shorter schedule, another data_root)')
    parser.add_argument('--metric', help='the val metric of the "best" columns (default: '
                        'the first one logged, e.g. accuracy/top1)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help="passed to tools/train.py")
    parser.add_argument('--command', help='run template instead of tools/train.py: '
                        '{config} {work_dir} {name} {python}')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--dry-run', action='store_true', help='write and check the configs, '
                      'print the commands, run nothing')
    mode.add_argument('--tabulate-only', action='store_true',
                      help='only read the work dirs and write the tables')
    parser.add_argument('--skip-done', action='store_true',
                        help='skip points whose earlier run in DIR succeeded')
    parser.add_argument('--stop-on-error', action='store_true')
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index('--') + 1:] if '--' in argv else []
    args = arg_parser().parse_args(argv[:argv.index('--')] if '--' in argv else argv)
    args.extra = extra
    if args.list_presets:
        for name, preset in PRESETS.items():
            print(f"{name}: {preset['about']}\n    {preset['config']}\n    --grid "
                  + ' '.join(shlex.quote(g) for g in preset['grid']))
        return 0
    grid_items = list(args.grid)
    config = args.config
    if args.preset:
        grid_items = PRESETS[args.preset]['grid'] + grid_items
        config = config or PRESETS[args.preset]['config']
    if not config or not grid_items or not args.out_dir:
        arg_parser().error('give CONFIG (or --preset), --grid (or --preset) and --out-dir')
    if '::' not in config and not osp.isfile(config) and osp.isfile(osp.join(ROOT, config)):
        config = osp.join(ROOT, config)
    grid = parse_grid(grid_items)
    common = parse_options(args.cfg_options)
    clash = set(common) & {k for k, _ in grid}
    if clash:
        raise SystemExit(f'{sorted(clash)}: in both --grid and --cfg-options')

    # as tools/_cli.py: mmengine's imports of pkg_resources warn once per module
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated',
                            category=UserWarning)
    import sslreg  # noqa: F401  registers sslreg (its configs' custom_imports) quietly
    from mmengine.config import Config
    base_cfg = load_base(config)
    plain = _plain(base_cfg._cfg_dict)
    for key in list(common) + [k for k, _ in grid]:
        check_key(plain, key)
    keys = [k for k, _ in grid]
    names = short_names(keys)
    points = points_of(grid)
    out_dir = osp.abspath(args.out_dir)
    config_dir = osp.join(out_dir, 'configs')
    for sub in ('configs', 'work_dirs', 'logs'):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)

    rows = []
    for i, point in enumerate(points):
        name = point_name(i, point, names)
        merged = copy.deepcopy(base_cfg)
        merged.merge_from_dict({**common, **point}, allow_list_keys=True)
        path = osp.join(config_dir, name + '.py')
        with open(path, 'w') as f:
            f.write(point_config(config, config_dir, point, common, plain,
                                 _plain(merged._cfg_dict),
                                 f'sweep point {i + 1} of {len(points)}'))
        work_dir = osp.join(out_dir, 'work_dirs', name)
        rows.append(dict(name=name, point=point, config=path, work_dir=work_dir,
                         command=command_for(args, path, work_dir, name), status='not run'))
    if not args.tabulate_only:
        for row in rows:  # a point that does not load fails now, not after hours
            try:
                Config.fromfile(row['config'])
            except Exception as err:
                raise SystemExit(f"{row['config']} does not load: {err}") from err
    print(f'{len(rows)} point(s) of {config} in {config_dir}')

    failed = 0
    for row in rows:
        done = osp.exists(osp.join(row['work_dir'], DONE_MARK))
        if args.dry_run:
            print('  ' + ' '.join(shlex.quote(c) for c in row['command']))
            continue
        if args.tabulate_only or (args.skip_done and done):
            row['status'] = 'done' if done else ('ran' if osp.isdir(row['work_dir'])
                                                 else 'not run')
            continue
        log = osp.join(out_dir, 'logs', row['name'] + '.log')
        if done:  # run again: the earlier success no longer speaks for this run
            os.remove(osp.join(row['work_dir'], DONE_MARK))
        start = time.time()
        rc = run_point(row['command'], log)
        row.update(returncode=rc, seconds=round(time.time() - start, 1))
        if rc == 0:
            os.makedirs(row['work_dir'], exist_ok=True)
            open(osp.join(row['work_dir'], DONE_MARK), 'w').close()
            row['status'] = 'done'
        else:
            row['status'] = f'failed (exit {rc})'
            failed += 1
        print(f"  {row['name']}: {row['status']} in {row['seconds']} s (log {log})", flush=True)
        if rc != 0 and args.stop_on_error:
            break

    if args.dry_run:
        return 0
    for row in rows:
        row['result'] = final_metrics(row['work_dir'], args.metric)
    md, table = tabulate(rows, keys, args.metric)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(f'Sweep of `{osp.relpath(config, ROOT) if "::" not in config else config}`'
                f' ({len(rows)} points; last val record of each run)\n\n' + md)
    with open(osp.join(out_dir, 'results.csv'), 'w', newline='') as f:
        csv.writer(f).writerows(table)
    with open(osp.join(out_dir, 'sweep.json'), 'w') as f:
        json.dump(dict(config=config, grid=[[k, v] for k, v in grid], cfg_options=common,
                       points=rows), f, indent=1, default=repr)
    print(md, end='')
    print(f"tables: {osp.join(out_dir, 'results.md')}, {osp.join(out_dir, 'results.csv')}")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

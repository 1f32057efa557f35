"""A Markdown table of the val metrics of one or more MMEngine work dirs.

Rows are metrics (e.g. ``accuracy/top1`` and ``FeatureCollapseMetric``'s
``collapse/<layer>/{cdnv,ncc_acc,ncc_agreement,rank,erank,vcreg_variance,...}``),
columns are runs, values from each run's last val record in ``vis_data/scalars.json``
(``--step N`` for the record at step N: the epoch, or the iteration of by-iteration
runs).

Usage::

    python tools/analysis/metrics_table.py work_dirs/baseline work_dirs/rhosim_vcreg \\
        [--keys 'accuracy/*' 'collapse/*'] [--names base reg] [--out table.md]
"""
import argparse
import fnmatch
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from plot_curves import load_runs  # noqa: E402

NOT_METRICS = {'time', 'data_time', 'memory', 'step', 'epoch', 'iter', 'lr'}


def pick(records: List[dict], step: Optional[int]) -> Optional[dict]:
    if not records:
        return None
    if step is None:
        return records[-1]
    return next((r for r in records if r.get('step') == step), None)


def fmt(value) -> str:
    if value is None:
        return '–'
    if isinstance(value, float):
        if value != value:
            return 'nan'
        if value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f'{value:.4g}'
    return str(value)


def metrics_table(val_runs: Dict[str, List[dict]], patterns: Optional[Sequence[str]] = None,
                  step: Optional[int] = None) -> str:
    """The Markdown table (a string) of ``{run name: val records}``."""
    chosen = {name: pick(recs, step) for name, recs in val_runs.items()}
    keys = list(dict.fromkeys(k for r in chosen.values() if r for k in r))
    keys = [k for k in keys if k not in NOT_METRICS]
    if patterns:
        keys = [k for k in keys if any(fnmatch.fnmatchcase(k, p) for p in patterns)]
    names = list(chosen)
    lines = ['| metric | ' + ' | '.join(names) + ' |',
             '|---|' + '---:|' * len(names),
             '| val step | ' + ' | '.join(fmt(chosen[n].get('step') if chosen[n] else None)
                                          for n in names) + ' |']
    for key in keys:
        lines.append(f'| {key} | ' + ' | '.join(
            fmt(chosen[n].get(key) if chosen[n] else None) for n in names) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--keys', nargs='+', help="metrics to show (globs, e.g. 'collapse/*')")
    parser.add_argument('--names', nargs='+', help='column names (default: work-dir names)')
    parser.add_argument('--step', type=int, help='the val record at this step (default: last)')
    parser.add_argument('--out', help='write the table here (and print it)')
    args = parser.parse_args(argv)
    _, val = load_runs(args.work_dirs, args.names)
    if not any(val.values()):
        raise SystemExit('no val records in ' + ', '.join(args.work_dirs))
    table = metrics_table(val, args.keys, args.step)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table)
    print(table, end='')
    return table


if __name__ == '__main__':
    main()

"""Training curves of one or more MMEngine work dirs, from their ``vis_data/scalars.json``.

Writes to ``--out-dir``:

* ``losses.png``: one panel per logged training scalar (``loss``, each ``loss_<name>``
  and regularizer statistic such as VCReg's ``<name>_value``; ``--keys`` picks them by
  glob), runs overlaid, legend = work-dir name;
* ``grad_norm.png`` (runs logged with ``GradNormHook``): the global gradient norm, raw
  as a thin line and its EMA as a thick one per run (the SIM paper's Fig. 5 style),
  then one panel per stage (``grad_norm/<stage>``; EMA computed here).

Usage::

    python tools/analysis/plot_curves.py work_dirs/baseline work_dirs/rhosim_vcreg \\
        --out-dir work_dirs/plots [--keys 'loss*' 'vcreg_*'] [--names base reg] [--logy]

A work dir may hold several runs (timestamped dirs, e.g. after ``--resume``): their
records are merged by step, the later run winning. Training records are those with an
``iter`` field (x = global iteration ``step``); the others are val/test records (see
``metrics_table.py``). The points are the iterations the logger wrote
(``default_hooks.logger.interval``), with the values it wrote: MMEngine's LogProcessor
averages keys matching its ``mean_pattern`` ('loss', 'time', 'grad_norm') over
``log_processor.window_size`` iterations (``GradNormHook`` opts its own keys out).
"""
import argparse
import fnmatch
import json
import math
import os
import os.path as osp
import textwrap
from glob import glob
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

#: Training-record fields that are not curves of the model.
NOT_CURVES = {'lr', 'base_lr', 'time', 'data_time', 'memory', 'epoch', 'iter', 'step'}


def scalars_files(work_dir: str) -> List[str]:
    """The ``scalars.json`` files of a work dir (or a run dir, or the file itself), oldest
    run first."""
    if osp.isfile(work_dir):
        return [work_dir]
    files = sorted(glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    files += sorted(glob(osp.join(work_dir, 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {work_dir}')
    return files


def load_records(work_dir: str) -> Tuple[List[dict], List[dict]]:
    """``(train, val)`` records of a work dir, each sorted by ``step``; records at the
    same step are merged, later files (runs) winning."""
    train: Dict[int, dict] = {}
    val: Dict[int, dict] = {}
    for path in scalars_files(work_dir):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                target = train if 'iter' in rec else val
                step = int(rec.get('step', len(target)))
                target[step] = {**target.get(step, {}), **rec}
    return [train[s] for s in sorted(train)], [val[s] for s in sorted(val)]


def series(records: Sequence[dict], key: str) -> Tuple[List[float], List[float]]:
    xs, ys = [], []
    for rec in records:
        value = rec.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(rec['step'])
            ys.append(float(value))
    return xs, ys


def ema(values: Sequence[float], momentum: float) -> List[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else momentum * acc + (1 - momentum) * v
        out.append(acc)
    return out


def run_names(work_dirs: Sequence[str], names: Optional[Sequence[str]] = None) -> List[str]:
    if names:
        if len(names) != len(work_dirs):
            raise SystemExit(f'--names gives {len(names)} names for {len(work_dirs)} work dirs')
        return list(names)
    base = [osp.basename(osp.normpath(w)) for w in work_dirs]
    if len(set(base)) < len(base):  # same basename: show more of the path
        return [osp.relpath(w) for w in work_dirs]
    return base


def curve_keys(runs: Dict[str, List[dict]], patterns: Optional[Sequence[str]] = None):
    """Training keys to plot, in order of first appearance (``loss`` first)."""
    keys = list(dict.fromkeys(k for recs in runs.values() for r in recs for k in r))
    keys = [k for k in keys if k not in NOT_CURVES and not k.startswith('grad_norm')]
    if patterns:
        keys = [k for k in keys if any(fnmatch.fnmatchcase(k, p) for p in patterns)]
    return sorted(keys, key=lambda k: (k != 'loss', not k.startswith('loss'), keys.index(k)))


def _grid(n: int, ncols: int = 3, size=(4.6, 3.1)):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows),
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


DPI = 90


def _finish(fig, path: str, title: str, dpi: int = DPI):
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 11)), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, pil_kwargs=dict(optimize=True))
    plt.close(fig)
    return path


def _colors(n):
    cmap = plt.get_cmap('tab10')
    return [cmap(i % 10) for i in range(n)]


def plot_losses(runs: Dict[str, List[dict]], path: str,
                patterns: Optional[Sequence[str]] = None, logy: bool = False,
                ncols: int = 3, dpi: int = DPI) -> Optional[str]:
    """``losses.png``: one panel per key, runs overlaid. None if there is nothing to plot."""
    keys = curve_keys(runs, patterns)
    if not keys:
        return None
    fig, axes = _grid(len(keys), ncols)
    colors = _colors(len(runs))
    for ax, key in zip(axes, keys):
        for color, (name, recs) in zip(colors, runs.items()):
            xs, ys = series(recs, key)
            if xs:
                ax.plot(xs, ys, color=color, lw=1.4, label=name)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel('iteration')
        ax.set_ylabel(key)
        if logy:
            ax.set_yscale('log')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _finish(fig, path, 'training losses and regularizer terms, as logged (MMEngine '
                   "averages keys with 'loss' in their name over log_processor.window_size)",
                   dpi)


def plot_grad_norm(runs: Dict[str, List[dict]], path: str, momentum: float = 0.9,
                   stages: bool = True, logy: bool = False,
                   patterns: Optional[Sequence[str]] = None, ncols: int = 3,
                   dpi: int = DPI) -> Optional[str]:
    """``grad_norm.png``: raw (thin) and EMA (thick) gradient norms per run, the global
    norm first, then each stage (``patterns``: globs over the stage names). None if no
    run logged ``grad_norm``."""
    keys = ['grad_norm']
    if stages:
        keys += [k for k in dict.fromkeys(k for recs in runs.values() for r in recs for k in r
                                          if k.startswith('grad_norm/'))
                 if not patterns or any(fnmatch.fnmatchcase(k[10:], p) for p in patterns)]
    if not any(series(recs, 'grad_norm')[0] for recs in runs.values()):
        return None
    fig, axes = _grid(len(keys), ncols)
    colors = _colors(len(runs))
    for ax, key in zip(axes, keys):
        for color, (name, recs) in zip(colors, runs.items()):
            xs, ys = series(recs, key)
            if not xs:
                continue
            ax.plot(xs, ys, color=color, lw=0.7, alpha=0.45)
            if key == 'grad_norm' and series(recs, 'grad_norm_ema')[0]:
                ex, ey = series(recs, 'grad_norm_ema')  # the hook's per-iteration EMA
            else:
                ex, ey = xs, ema(ys, momentum)
            ax.plot(ex, ey, color=color, lw=2.2, label=f'{name} (EMA)')
        ax.set_title('global gradient norm' if key == 'grad_norm' else
                     f'gradient norm of {key.split("/", 1)[1]}', fontsize=10)
        ax.set_xlabel('iteration')
        ax.set_ylabel('L2 norm of the gradient')
        if logy:
            ax.set_yscale('log')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title='thin: raw', title_fontsize=7)
    return _finish(fig, path, 'gradient norms (thin: every logged iteration, thick: EMA)', dpi)


def load_runs(work_dirs: Sequence[str], names=None) -> Tuple[Dict[str, List[dict]],
                                                             Dict[str, List[dict]]]:
    """``({name: train records}, {name: val records})``."""
    train, val = {}, {}
    for name, wd in zip(run_names(work_dirs, names), work_dirs):
        train[name], val[name] = load_records(wd)
    return train, val


def main(argv=None) -> List[str]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--out-dir', default='.', help='where the PNGs go')
    parser.add_argument('--keys', nargs='+', help="training keys to plot (globs, e.g. 'loss*')")
    parser.add_argument('--names', nargs='+', help='legend names (default: work-dir names)')
    parser.add_argument('--ema', type=float, default=0.9, help='EMA momentum for the stage '
                        'curves (the global one uses the logged grad_norm_ema)')
    parser.add_argument('--no-stages', action='store_true', help='global gradient norm only')
    parser.add_argument('--stages', nargs='+', help="stage panels to draw (globs over stage "
                        "names, e.g. 'backbone.layer*')")
    parser.add_argument('--width', type=int, default=3, help='panels per row')
    parser.add_argument('--dpi', type=int, default=DPI, help='PNG resolution')
    parser.add_argument('--logy', action='store_true', help='logarithmic y axes')
    args = parser.parse_args(argv)
    train, _ = load_runs(args.work_dirs, args.names)
    os.makedirs(args.out_dir, exist_ok=True)
    written = [p for p in (
        plot_losses(train, osp.join(args.out_dir, 'losses.png'), args.keys, args.logy,
                    args.width, args.dpi),
        plot_grad_norm(train, osp.join(args.out_dir, 'grad_norm.png'), args.ema,
                       not args.no_stages, args.logy, args.stages, args.width, args.dpi)) if p]
    for p in written:
        print(p)
    return written


if __name__ == '__main__':
    main()

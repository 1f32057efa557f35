"""Run the paper-claim experiments in tools/evidence/ and write docs/evidence.md.

Usage::

    python tools/evidence/run.py [--quick] [--seeds 0,1,...] [--only name1,name2]
                                 [--out docs/evidence.md] [--fig-dir docs/evidence]

Experiment registry
-------------------
Every ``tools/evidence/exp_<name>.py`` is one experiment; this script finds them by
file name, so adding an experiment means adding one file. A module exposes

* ``NAME`` (str): used by ``--only`` and in the report;
* ``CLAIM`` (str): the paper's claim, one sentence, with the paper/table/figure;
* ``SEEDS`` (optional list of int): its reported seeds (default ``[0, 1, 2, 3, 4]``);
  ``--quick`` runs only the first, ``--seeds`` overrides both;
* ``run(seeds, quick, progress) -> dict``. ``progress(message, fraction=None)``
  prints a progress line; give ``fraction`` (0..1 of this experiment done) for an
  ETA. The returned dict may hold

  - ``'comparisons'``: a list of dicts, one table row each, with ``claim`` (the
    paper's claim for this metric), ``metric`` (what was measured, with its unit /
    split), ``treatment`` and ``control`` (labels), ``treatment_values`` and
    ``control_values`` (per seed, same seed order) and ``direction`` (``'higher'``
    or ``'lower'``: the sign of treatment - control the paper claims);
  - ``'setup'``: markdown describing data, model, hyper-parameters;
  - ``'markdown'``: extra markdown placed after the table (e.g. per-method means);
  - ``'notes'``: a list of markdown lines (the "does the regularizer act" checks);
  - ``'figures'``: ``{file_name.png: matplotlib Figure}``, saved into ``--fig-dir``
    and embedded in the report; or a list of paths of PNGs the experiment saved
    itself (relative to the repository root or absolute), embedded as they are. A
    module that saves its own figures should define ``FIGURE_DIR``: this script sets
    it to ``--fig-dir`` before calling ``run``.

  Also accepted (the older form): ``'metrics'``: ``{metric_name: {'with': [...],
  'without': [...], 'direction': 'up'|'down', 'claim': str}}``, read as comparisons
  with treatment 'with' and control 'without'.

The statistics (mean +/- std, paired difference with a 95 % Student-t CI, verdict)
are computed here by ``stats.paired``; experiments report raw per-seed values only.
"""
import argparse
import datetime
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

import stats  # noqa: E402

DEFAULT_SEEDS = [0, 1, 2, 3, 4]
TABLE_HEADER = ('| paper\'s claim | metric | claimed | with (mean ± std) | without (mean ± std) | '
                'paired diff with − without [95% CI] | n | verdict |')
CLAIMED = {'higher': 'with > without', 'lower': 'with < without'}


def discover(directory: Path = HERE):
    mods = {}
    for path in sorted(directory.glob('exp_*.py')):
        spec = importlib.util.spec_from_file_location(f'evidence_{path.stem}', path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for attr in ('NAME', 'CLAIM', 'run'):
            if not hasattr(mod, attr):
                raise AttributeError(f'{path} must define {attr} (see tools/evidence/run.py)')
        if mod.NAME in mods:
            raise ValueError(f'two experiments are named {mod.NAME!r}')
        mods[mod.NAME] = mod
    return mods


def git_state() -> str:
    try:
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain'], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown (not a git checkout)'
    return head + (' + uncommitted changes' if dirty else '')


class Progress:
    def __init__(self, name: str, stream=sys.stdout):
        self.name, self.stream, self.t0 = name, stream, time.time()

    def __call__(self, message: str, fraction=None):
        el = time.time() - self.t0
        eta = ''
        if fraction is not None and fraction > 0:
            eta = f', ETA {el * (1 - fraction) / fraction:.0f} s'
        print(f'[{self.name} {el:6.1f} s{eta}] {message}', file=self.stream, flush=True)


def _cell_ms(m, s):
    return f'{stats.fmt(m)} ± {stats.fmt(s)}'


def table(comparisons) -> str:
    rows = [TABLE_HEADER, '|' + '---|' * 8]
    for c in comparisons:
        r = stats.paired(c['treatment_values'], c['control_values'], c['direction'])
        c['stats'] = r
        rows.append('| {claim} | {metric} | {claimed} | {t}: {tv} | {c}: {cv} | {d} [{lo}, {hi}] | {n} | '
                    '**{v}** |'.format(
                        claim=c['claim'], metric=c['metric'], t=c['treatment'],
                        claimed=CLAIMED[c['direction']],
                        c=c['control'], tv=_cell_ms(r['treatment_mean'], r['treatment_std']),
                        cv=_cell_ms(r['control_mean'], r['control_std']),
                        d=stats.fmt(r['diff_mean']), lo=stats.fmt(r['ci_lo']),
                        hi=stats.fmt(r['ci_hi']), n=r['n'], v=r['verdict']))
    return '\n'.join(rows)


DIRECTION_ALIASES = {'up': 'higher', 'down': 'lower', 'higher': 'higher', 'lower': 'lower'}


def comparisons_of(result):
    comps = [dict(c) for c in result.get('comparisons') or []]
    for name, m in (result.get('metrics') or {}).items():
        comps.append(dict(claim=m.get('claim', name), metric=m.get('metric', name),
                          treatment=m.get('treatment', 'with'),
                          control=m.get('control', 'without'),
                          treatment_values=m['with'], control_values=m['without'],
                          direction=m['direction']))
    for c in comps:
        c['direction'] = DIRECTION_ALIASES[c['direction']]
    return comps


def section(mod, result, seeds, quick, seconds, fig_dir: Path, out: Path) -> str:
    lines = [f'## {mod.NAME}', '', f'**Claim.** {mod.CLAIM}', '',
             f'Seeds: {", ".join(map(str, seeds))}{" (quick mode: smallest sizes)" if quick else ""}'
             f'; wall time {seconds:.0f} s.', '']
    if result.get('setup'):
        lines += [result['setup'], '']
    comps = comparisons_of(result)
    if comps:
        lines += [table(comps), '',
                  '"with − without" is per seed (same seeds, same data); the CI is Student t '
                  'on the paired differences (t quantile with n − 1 degrees of freedom). '
                  'Verdict: **shown** if the CI excludes 0 in the paper\'s direction, '
                  '**opposite** if it excludes 0 the other way, **not shown** otherwise.', '']
    if result.get('markdown'):
        lines += [result['markdown'], '']
    if result.get('notes'):
        lines += ['**Checks.**', ''] + [f'- {n}' for n in result['notes']] + ['']
    figs = result.get('figures') or {}
    if not isinstance(figs, dict):
        for f in figs:
            path = Path(f) if Path(f).is_absolute() else ROOT / f
            rel = os.path.relpath(path, out.parent.resolve())
            lines += [f'![{path.name}]({rel})', '']
        figs = {}
    if figs:
        fig_dir.mkdir(parents=True, exist_ok=True)
        for fname, fig in figs.items():
            path = fig_dir / fname
            fig.savefig(path, dpi=110, bbox_inches='tight')
            try:
                import matplotlib.pyplot as plt
                plt.close(fig)
            except ImportError:
                pass
            rel = os.path.relpath(path.resolve(), out.parent.resolve())
            lines += [f'![{fname}]({rel})', '']
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='1 seed, smallest sizes')
    ap.add_argument('--seeds', help='comma-separated seeds (default: each experiment\'s own)')
    ap.add_argument('--only', help='comma-separated experiment NAMEs')
    ap.add_argument('--out', default=str(ROOT / 'docs' / 'evidence.md'))
    ap.add_argument('--fig-dir', default=str(ROOT / 'docs' / 'evidence'))
    args = ap.parse_args(argv)
    command = 'python tools/evidence/run.py' + ''.join(
        f' {a}' for a in (argv if argv is not None else sys.argv[1:]))

    import matplotlib
    matplotlib.use('Agg')
    mods = discover()
    names = list(mods)
    if args.only:
        names = [n.strip() for n in args.only.split(',') if n.strip()]
        unknown = [n for n in names if n not in mods]
        if unknown:
            ap.error(f'unknown experiment(s) {unknown}; known: {sorted(mods)}')
    out, fig_dir = Path(args.out).resolve(), Path(args.fig_dir).resolve()
    t_all = time.time()
    started = datetime.datetime.now(datetime.timezone.utc)
    commit = git_state()  # before this run writes its own report and figures
    sections = []
    for i, name in enumerate(names):
        mod = mods[name]
        seeds = ([int(s) for s in args.seeds.split(',')] if args.seeds
                 else list(getattr(mod, 'SEEDS', DEFAULT_SEEDS)))
        if args.quick and not args.seeds:
            seeds = seeds[:1]
        if hasattr(mod, 'FIGURE_DIR'):
            mod.FIGURE_DIR = fig_dir
        prog = Progress(name)
        prog(f'experiment {i + 1}/{len(names)}, seeds {seeds}', 0.0)
        t0 = time.time()
        result = mod.run(seeds, args.quick, prog)
        dt = time.time() - t0
        prog(f'done in {dt:.1f} s')
        sections.append(section(mod, result, seeds, args.quick, dt, fig_dir, out))
    total = time.time() - t_all
    head = ['# Evidence: paper claims measured on small CPU experiments', '',
            f'Generated by `{command}`  ',
            f'on commit `{commit}`  ',
            f'{started:%Y-%m-%d %H:%M} UTC, total wall time {total:.0f} s'
            f'{" (quick mode)" if args.quick else ""}.', '',
            'Each row compares a run with the regularizer ("with") to the same run without '
            'it ("without") on the same seeds. Reported seeds are the experiments\' defaults '
            '(0..n−1) and were not tuned on; any tuning used seeds ≥ 100 and is stated in '
            'the experiment\'s setup.', '']
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('\n'.join(head + sections).rstrip() + '\n')
    print(f'wrote {out} in {total:.1f} s', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

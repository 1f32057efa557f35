"""Paired comparison of a regularizer against a baseline over the same seeds.

Pure functions (math + scipy.stats.t for the quantile). ``paired(treatment, control,
direction)`` takes per-seed values of one metric with the regularizer (``treatment``)
and without it (``control``), in the same seed order, and returns

* mean and sample std (ddof=1) of each side,
* the paired differences ``d_i = treatment_i - control_i``: their mean and a 95 %
  confidence interval ``mean(d) +/- t_{0.975, n-1} * sd(d) / sqrt(n)`` (Student t on
  the paired differences; the same t as ``scipy.stats.ttest_rel``),
* ``n`` and a verdict: ``'shown'`` when the CI excludes 0 on the side the paper
  claims (``direction='higher'``: d > 0; ``'lower'``: d < 0), ``'opposite'`` when it
  excludes 0 on the other side, ``'not shown'`` otherwise (including n < 2, where
  there is no CI).
"""
import math
from typing import Dict, Optional, Sequence

DIRECTIONS = ('higher', 'lower')
VERDICTS = ('shown', 'opposite', 'not shown')


def mean(xs: Sequence[float]) -> float:
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs)


def std(xs: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1); nan for fewer than two values."""
    xs = [float(x) for x in xs]
    if len(xs) < 2:
        return float('nan')
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def t_quantile(p: float, df: int) -> float:
    from scipy.stats import t
    return float(t.ppf(p, df))


def paired_ci(diffs: Sequence[float], level: float = 0.95):
    """(mean, lo, hi) of the paired differences; lo = hi = nan when n < 2."""
    n = len(diffs)
    m = mean(diffs)
    if n < 2:
        return m, float('nan'), float('nan')
    half = t_quantile(0.5 + level / 2, n - 1) * std(diffs) / math.sqrt(n)
    return m, m - half, m + half


def verdict(lo: float, hi: float, direction: str) -> str:
    """Verdict from a CI [lo, hi] of treatment - control (module docstring)."""
    if direction not in DIRECTIONS:
        raise ValueError(f'direction must be one of {DIRECTIONS}, got {direction!r}')
    if math.isnan(lo) or math.isnan(hi):
        return 'not shown'
    if lo > 0:
        return 'shown' if direction == 'higher' else 'opposite'
    if hi < 0:
        return 'shown' if direction == 'lower' else 'opposite'
    return 'not shown'


def paired(treatment: Sequence[float], control: Sequence[float], direction: str,
           level: float = 0.95) -> Dict[str, Optional[float]]:
    if len(treatment) != len(control):
        raise ValueError(f'paired comparison needs the same seeds on both sides, got '
                         f'{len(treatment)} and {len(control)} values')
    if not treatment:
        raise ValueError('no values')
    diffs = [float(a) - float(b) for a, b in zip(treatment, control)]
    m, lo, hi = paired_ci(diffs, level)
    return dict(n=len(diffs), treatment_mean=mean(treatment), treatment_std=std(treatment),
                control_mean=mean(control), control_std=std(control), diff_mean=m,
                ci_lo=lo, ci_hi=hi, level=level, direction=direction,
                verdict=verdict(lo, hi, direction))


def fmt(x: float, digits: int = 3) -> str:
    """Compact number: 3 significant digits, nan as 'n/a'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return 'n/a'
    return f'{x:.{digits}g}'

"""tools/evidence: the paired statistics against scipy, and a quick end-to-end run of
run.py that checks the report is complete and its verdicts follow from its numbers
(not that any effect is shown)."""
import math
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / 'tools' / 'evidence'))
import stats  # noqa: E402

pytestmark = pytest.mark.timeout(300)

QUICK_ONLY = 'vcreg_two_moons,vcreg_collapse'


def test_paired_matches_scipy():
    scipy_stats = pytest.importorskip('scipy.stats')
    a = [0.31, 0.42, 0.38, 0.51, 0.29, 0.47]
    b = [0.30, 0.35, 0.36, 0.40, 0.31, 0.41]
    r = stats.paired(a, b, 'higher')
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    sd = math.sqrt(sum((x - sum(d) / n) ** 2 for x in d) / (n - 1))
    half = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert r['n'] == n
    assert r['diff_mean'] == pytest.approx(sum(d) / n)
    assert r['ci_lo'] == pytest.approx(sum(d) / n - half)
    assert r['ci_hi'] == pytest.approx(sum(d) / n + half)
    # the CI is the one implied by ttest_rel: mean / t-statistic = standard error
    tt = scipy_stats.ttest_rel(a, b)
    se = r['diff_mean'] / tt.statistic
    assert half == pytest.approx(scipy_stats.t.ppf(0.975, n - 1) * se)
    # and it excludes 0 exactly when the two-sided p-value is below 0.05
    assert (r['ci_lo'] > 0 or r['ci_hi'] < 0) == (tt.pvalue < 0.05)
    assert r['treatment_std'] == pytest.approx(float(__import__('numpy').std(a, ddof=1)))


def test_verdicts():
    up = [1.0, 1.1, 1.2, 1.05, 1.15]
    base = [0.0, 0.1, 0.15, 0.05, 0.1]
    assert stats.paired(up, base, 'higher')['verdict'] == 'shown'
    assert stats.paired(up, base, 'lower')['verdict'] == 'opposite'
    assert stats.paired(base, up, 'lower')['verdict'] == 'shown'
    noisy = [1.0, -1.0, 0.5, -0.4, 0.1]
    assert stats.paired(noisy, [0.0] * 5, 'higher')['verdict'] == 'not shown'
    assert stats.paired([1.0], [0.0], 'higher')['verdict'] == 'not shown'  # n = 1: no CI
    with pytest.raises(ValueError):
        stats.paired([1.0, 2.0], [1.0], 'higher')
    with pytest.raises(ValueError):
        stats.verdict(0.1, 0.2, 'up')


def _num(name):
    return rf'(?P<{name}>-?[0-9.]+(?:e[-+]?\d+)?|n/a)'

ROW = re.compile(r'^\| (?P<claim>[^|]+) \| (?P<metric>[^|]+) \| with (?P<sign>[<>]) without \| '
                 r'(?P<t>[^|]+) \| (?P<c>[^|]+) \| '
                 rf'{_num("d")} \[{_num("lo")}, {_num("hi")}\] \| (?P<n>\d+) \| \*\*(?P<v>[a-z ]+)\*\* \|$')


def _f(s):
    return float('nan') if s == 'n/a' else float(s)


def _quick_run(tmp_path, only, seeds='0,1'):
    out, figs = tmp_path / 'evidence.md', tmp_path / 'fig'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools/evidence/run.py'), '--quick', '--only', only,
         '--seeds', seeds, '--out', str(out), '--fig-dir', str(figs)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'ETA' in proc.stdout
    text = out.read_text()
    assert '--quick' in text and 'commit `' in text
    assert re.search(r'commit `[0-9a-f]{40}', text)
    for name in only.split(','):
        assert f'## {name}' in text
    return text, figs


def _check_rows(text, n):
    """Every table row is complete and its verdict follows from its own CI."""
    rows = [l for l in text.splitlines() if l.startswith('| ') and '**' in l]
    for line in rows:
        m = ROW.match(line)
        assert m, f'malformed row: {line}'
        for k in ('claim', 'metric', 't', 'c'):
            assert m.group(k).strip(), line
        assert 'n/a' not in m.group('t') and 'n/a' not in m.group('c'), line
        assert int(m.group('n')) == n
        lo, hi = _f(m.group('lo')), _f(m.group('hi'))
        assert not (math.isnan(lo) or math.isnan(hi)), line
        assert lo <= _f(m.group('d')) <= hi
        direction = {'>': 'higher', '<': 'lower'}[m.group('sign')]
        assert m.group('v') == stats.verdict(lo, hi, direction), line
    return rows


def test_quick_run_report(tmp_path):
    text, figs = _quick_run(tmp_path, QUICK_ONLY)
    assert len(_check_rows(text, 2)) >= 5 + 5 + 2
    for png in ('vcreg_two_moons.png',):
        assert (figs / png).stat().st_size > 10_000
        assert f'fig/{png}' in text


SSL_ONLY = 'ser_equivariance,mcr_entropy,sidae_low_label'


def test_quick_run_of_the_ssl_experiments(tmp_path):
    """SER, MCR and SidAE through their shipped configs: 3 + 4 + 4 rows, each checked, and
    the checks (gradient shares, the regularizer's own term) filled with numbers."""
    text, _ = _quick_run(tmp_path, SSL_ONLY)
    assert len(_check_rows(text, 2)) == 3 + 4 + 4
    for section in text.split('\n## ')[1:]:
        checks = section.split('**Checks.**')[1]
        assert 'nan' not in checks.split('\n- ')[1], section[:60]
        assert re.search(r'[0-9.]+ ± [0-9.]+', checks.split('\n- ')[1]), section[:60]

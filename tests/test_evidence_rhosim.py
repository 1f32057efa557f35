"""tools/evidence/exp_rhosim_gradients.py: the registry contract on a quick run, and that
its reconstruction metric tells an identity-like block from one that drops channels.
Checks structure only: whether ρSIM shows the paper's effect is the experiment's job."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from conftest import ROOT

pytestmark = pytest.mark.timeout(300)


def load():
    path = ROOT / 'tools' / 'evidence' / 'exp_rhosim_gradients.py'
    spec = importlib.util.spec_from_file_location('exp_rhosim_gradients_under_test', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_run_contract(tmp_path, monkeypatch):
    mod = load()
    assert isinstance(mod.NAME, str) and mod.NAME
    assert isinstance(mod.CLAIM, str) and mod.CLAIM
    monkeypatch.setattr(mod, 'FIGURE_DIR', tmp_path)  # keep docs/evidence's full-run figure
    res = mod.run([0], quick=True, progress=print)
    assert set(res) >= {'metrics', 'figures', 'notes'}
    assert isinstance(res.get('setup', ''), str)
    assert res['metrics']
    for name, m in res['metrics'].items():
        assert len(m['with']) == len(m['without']) == 1, name
        assert all(isinstance(v, (int, float)) and math.isfinite(v)
                   for v in [*m['with'], *m['without']]), name
        assert m['direction'] in ('up', 'down'), name
        assert isinstance(m['claim'], str) and m['claim'], name
    for k in ('grad_logstd', 'grad_spikes', 'recon_nmse', 'test_acc'):
        assert k in res['metrics']
    assert res['figures']
    for fig in res['figures']:
        p = Path(fig) if Path(fig).is_absolute() else ROOT / fig
        assert p.is_file() and p.stat().st_size > 0, fig
    assert all(isinstance(n, str) for n in res['notes'])


def test_reconstruction_metric_separates_identity_from_channel_dropping():
    mod = load()
    g = torch.Generator().manual_seed(0)
    z_in = torch.randn(64, 32, 8, 8, generator=g)
    identity_like = z_in + 0.05 * torch.randn(z_in.shape, generator=g)
    mask = torch.zeros(1, 32, 1, 1)
    mask[:, :4] = 1                                   # keeps 4 of 32 channels
    dropping = z_in * mask
    good = mod.reconstruction_nmse(z_in, identity_like)
    bad = mod.reconstruction_nmse(z_in, dropping)
    assert good < 0.05 and bad > 0.5 and good < bad, (good, bad)
    # a stride-2 block (input on a 2x finer grid) is handled too
    pooled = torch.nn.functional.avg_pool2d(z_in, 2)
    assert mod.reconstruction_nmse(z_in, pooled) < mod.reconstruction_nmse(z_in, pooled * mask[:, :32])


def test_spikiness_counts_spikes_above_twice_the_ema():
    mod = load()
    g = [1.0] * 30
    g[20] = 5.0
    std, spikes = mod.spikiness(g, warmup=5)
    assert spikes == 1 and std > 0
    assert mod.spikiness([1.0] * 30, warmup=5) == (0.0, 0)

"""tools/benchmark_overhead.py: the interleaving, the memory measure, and one tiny run.

No assertion here is about speed: timings on a shared CPU say nothing in a test.
"""
import importlib.util
import inspect
import json

import pytest
import torch


@pytest.fixture(scope='module')
def bench(root):
    spec = importlib.util.spec_from_file_location('benchmark_overhead',
                                                  root / 'tools' / 'benchmark_overhead.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeClock:
    """Time that moves only when a fake step says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_interleaved_times_round_robin_after_warmup(bench):
    clock, calls = FakeClock(), []

    def fake_step(name, seconds):
        def step():
            calls.append(name)
            clock.now += seconds
        return step

    steps = [('a', fake_step('a', 1.0)), ('b', fake_step('b', 2.0)), ('c', fake_step('c', 3.0))]
    times = bench.interleaved_times(steps, repeats=3, warmup=2, clock=clock)
    assert calls == ['a', 'b', 'c'] * 5
    assert times == {'a': [1.0] * 3, 'b': [2.0] * 3, 'c': [3.0] * 3}


def test_interleaved_times_without_warmup(bench):
    calls = []
    steps = [(n, lambda n=n: calls.append(n)) for n in ('x', 'y')]
    times = bench.interleaved_times(steps, repeats=2, warmup=0)
    assert calls == ['x', 'y', 'x', 'y']
    assert [len(t) for t in times.values()] == [2, 2]


def test_default_rows_are_the_issue_list(bench):
    plan = bench.rows_to_run(['resnet18', 'resnet50', 'vit-b32'], None)
    assert plan['resnet18'][:2] == ['none', 'rhosim']
    assert plan['resnet50'][:4] == ['none', 'vcreg-fast', 'vcreg-explicit', 'rhosim']
    assert plan['vit-b32'][:3] == ['none', 'vcreg-fast', 'vcreg-explicit']
    assert 'rhosim' not in plan['vit-b32']


def test_named_variants_run_on_every_backbone_with_their_baseline(bench):
    plan = bench.rows_to_run(['resnet18', 'vit-b32'], ['vcreg-fast'])
    assert plan == {'resnet18': ['none', 'vcreg-fast'], 'vit-b32': ['none', 'vcreg-fast']}


def test_sampled_row_exactly_when_vcreg_can_sample(bench):
    from sslreg.regularizers.vcreg import VCReg
    can_sample = 'sample_ratio' in inspect.signature(VCReg.__init__).parameters
    assert ('vcreg-fast-sampled' in bench.VARIANTS) == can_sample
    if can_sample:
        cfg = bench.VARIANTS['vcreg-fast-sampled'].regularizers(bench.BACKBONES['resnet50'])
        assert cfg['vcreg']['mode'] == 'fast'
        assert cfg['vcreg']['sample_ratio'] == bench.SAMPLED_FRACTION < 1
        assert 'vcreg-fast-sampled' in bench.rows_to_run(['resnet50'], None)['resnet50']


def test_saved_activation_bytes_dedupes_storages_and_skips_parameters(bench):
    linear = torch.nn.Linear(4, 4, bias=False)
    x = torch.randn(3, 4)

    def step():
        linear.zero_grad()
        (linear(x) * linear(x)).sum().backward()

    # x is saved by both matmuls (one storage, 48 bytes); mul saves its two distinct
    # 3x4 operands (96 bytes); the weight is a parameter and is left out.
    assert bench.saved_activation_bytes(linear, step) == 48 + 96


def test_tiny_run_writes_rows_with_regularizers_attached(bench, tmp_path):
    out = tmp_path / 'overhead.json'
    threads_before = torch.get_num_threads()
    variants = ['none', 'vcreg-fast', 'rhosim']
    sampled = 'vcreg-fast-sampled' in bench.VARIANTS
    variants += ['vcreg-fast-sampled'] if sampled else []
    result = bench.main(['--backbones', 'resnet18', '--variants', ','.join(variants),
                         '--batch', '2', '--size', '64', '--repeats', '2', '--warmup', '1',
                         '--threads', '1', '--device', 'cpu', '--out', str(out)])
    assert torch.get_num_threads() == threads_before  # --threads is undone on return
    saved = json.loads(out.read_text())
    assert saved['info']['threads'] == 1
    assert saved['rows'] == json.loads(json.dumps(result['rows']))
    rows = {r['variant']: r for r in saved['rows']}
    assert set(rows) == set(variants)
    for row in rows.values():
        assert row['backbone'] == 'resnet18' and row['batch'] == 2 and row['size'] == 64
        assert len(row['times_s']) == 2 and all(t > 0 for t in row['times_s'])
        assert row['median_s'] > 0
        assert isinstance(row['memory_ratio'], float) and row['memory_ratio'] > 0
        assert row['memory_bytes'] > 0
    base = rows['none']
    assert base['time_ratio'] == 1.0 and base['memory_ratio'] == 1.0
    assert base['flop_ratio'] == 1.0
    # The regularizers add arithmetic: were they not attached, these would be 1.0.
    assert rows['vcreg-fast']['flop_ratio'] > 1
    assert rows['rhosim']['flop_ratio'] > 1
    if sampled:  # attached, and with less arithmetic than the exact statistics
        assert 1 < rows['vcreg-fast-sampled']['flop_ratio'] < rows['vcreg-fast']['flop_ratio']
    # rhoSIM's reconstructor heads add parameters, gradients and saved activations.
    assert rows['rhosim']['memory_ratio'] > 1

"""tools/benchmark_overhead.py: the interleaving, the memory measure, and one tiny run.

No assertion here is about speed: timings on a shared CPU say nothing in a test.
"""
import importlib.util
import json

import pytest
import torch

from conftest import run_tool


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
    plan = bench.rows_to_run(list(bench.GROUPS), None)
    assert plan['resnet18'] == ['none', 'rhosim']
    assert plan['resnet50'] == ['none', 'vcreg-fast', 'vcreg-explicit', 'vcreg-fast-sampled',
                                'rhosim']
    assert plan['vit-b32'] == ['none', 'vcreg-fast', 'vcreg-explicit', 'vcreg-fast-sampled']
    # SER over MoCo v3; MCR (each meta-gradient) over SimCLR; SidAE over SimSiam.
    assert plan['vit-s16-ssl'] == ['mocov3', 'ser-mocov3']
    assert plan['r18-cifar-ssl'] == ['simclr', 'simsiam', 'mcr-simclr', 'mcr-simclr-fd',
                                     'mcr-simclr-first-order', 'sidae']
    for name in plan['r18-cifar-ssl'] + plan['vit-s16-ssl']:
        assert bench.VARIANTS[name].algorithm is not None


def test_named_variants_run_on_every_backbone_they_apply_to(bench):
    plan = bench.rows_to_run(['resnet18', 'vit-b32', 'r18-cifar-ssl'], ['vcreg-fast', 'sidae'])
    assert plan == {'resnet18': ['none', 'vcreg-fast'], 'vit-b32': ['none', 'vcreg-fast'],
                    'r18-cifar-ssl': ['simsiam', 'sidae']}


def test_sampled_row_samples(bench):
    cfg = bench.VARIANTS['vcreg-fast-sampled'].regularizers(bench.BACKBONES['resnet50'])
    assert cfg['vcreg']['mode'] == 'fast'
    assert cfg['vcreg']['sample_ratio'] == bench.SAMPLED_FRACTION < 1


def test_algorithm_baselines_are_the_regularized_configs_without_the_regularizer(bench):
    ser = bench.algorithm_config(bench.VARIANTS['ser-mocov3'].algorithm, 'cpu')
    mocov3 = bench.algorithm_config(bench.VARIANTS['mocov3'].algorithm, 'cpu')
    assert (ser.model.type, mocov3.model.type) == ('SERMoCoV3', 'MoCoV3')
    assert mocov3.model.backbone.arch == ser.model.backbone.arch == 'mocov3-small'
    assert mocov3.optim_wrapper.type == 'OptimWrapper'  # AMP needs CUDA
    mcr = bench.algorithm_config(bench.VARIANTS['mcr-simclr'].algorithm, 'cpu')
    simclr = bench.algorithm_config(bench.VARIANTS['simclr'].algorithm, 'cpu')
    assert (mcr.model.type, simclr.model.type) == ('MCR', 'SimCLR')
    assert simclr.model.backbone == mcr.model.algorithm.backbone
    assert simclr.optim_wrapper == mcr.optim_wrapper.base
    sidae = bench.algorithm_config(bench.VARIANTS['sidae'].algorithm, 'cpu')
    simsiam = bench.algorithm_config(bench.VARIANTS['simsiam'].algorithm, 'cpu')
    assert (sidae.model.type, simsiam.model.type) == ('SidAE', 'SimSiam')
    assert 'decoder' in sidae.model and 'decoder' not in simsiam.model
    assert simsiam.model.neck == sidae.model.neck and simsiam.model.head == sidae.model.head


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
    variants = ['none', 'vcreg-fast', 'rhosim', 'vcreg-fast-sampled']
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
    # attached, and with less arithmetic than the exact statistics
    assert 1 < rows['vcreg-fast-sampled']['flop_ratio'] < rows['vcreg-fast']['flop_ratio']
    # rhoSIM's reconstructor heads add parameters, gradients and saved activations.
    assert rows['rhosim']['memory_ratio'] > 1


def test_tiny_algorithm_rows_train_through_mmengine(root, tmp_path):
    """The SSL rows at batch 4, one timed round, in a subprocess (their train steps set
    MessageHub state that must not leak into other tests)."""
    out = tmp_path / 'ssl.json'
    run_tool('tools/benchmark_overhead.py', '--backbones', 'r18-cifar-ssl,vit-s16-ssl',
             '--variants', 'mcr-simclr,mcr-simclr-fd,mcr-simclr-first-order,sidae,ser-mocov3',
             '--ssl-batch', '4',
             '--repeats', '1', '--warmup', '0', '--threads', '1', '--device', 'cpu',
             '--out', out, timeout=600)
    rows = {r['variant']: r for r in json.loads(out.read_text())['rows']}
    assert set(rows) == {'simclr', 'mcr-simclr', 'mcr-simclr-fd', 'mcr-simclr-first-order',
                         'simsiam', 'sidae', 'mocov3', 'ser-mocov3'}
    assert {r['batch'] for r in rows.values()} == {4}
    assert rows['sidae']['baseline'] == 'simsiam'
    assert rows['mcr-simclr']['baseline'] == 'simclr'
    # The decoder adds arithmetic; the meta-gradients cost what their method implies:
    # a double backward > two extra forwards > CompMod's head only.
    assert rows['sidae']['flop_ratio'] > 1
    # Each row trained its algorithm: the regularizer's own terms were logged.
    assert rows['ser-mocov3']['baseline'] == 'mocov3'
    assert 'loss_equiv' in rows['ser-mocov3']['logged']
    assert 'loss_equiv' not in rows['mocov3']['logged']
    assert 'loss_dae' in rows['sidae']['logged'] and 'loss_dae' not in rows['simsiam']['logged']
    for mcr in ('mcr-simclr', 'mcr-simclr-fd', 'mcr-simclr-first-order'):
        assert {'loss_mcr', 'loss_comp'} <= set(rows[mcr]['logged'])
    f = {k: rows[k]['flop_ratio'] for k in ('mcr-simclr', 'mcr-simclr-fd',
                                             'mcr-simclr-first-order')}
    assert f['mcr-simclr'] > f['mcr-simclr-fd'] > 2 > f['mcr-simclr-first-order'] > 1

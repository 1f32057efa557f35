"""Evidence tools: collapse/rank metrics, the val-time feature hook, GradNormHook and the
plot/table tools, on hand-made features with known answers and tiny real Runners."""
import importlib.util
import json
import math
from types import SimpleNamespace

import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import HOOKS, METRICS, MODELS
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from conftest import ROOT
from sslreg.evaluation import (FeatureCollapseMetric, LayerFeatureHook, cdnv, effective_rank,
                               feature_rank, ncc_accuracy, ncc_agreement)
from sslreg.hooks import GradNormHook
from sslreg.losses.vcreg import vcreg_loss, vcreg_terms

pytestmark = pytest.mark.timeout(300)


# --------------------------------------------------------------------------- metrics


def test_cdnv_handmade_exact():
    # class 0: (-1, 0), (1, 0): mean (0, 0), Var = 1; class 1: (10, -1), (10, 1): Var = 1
    f = torch.tensor([[-1., 0], [1, 0], [10, -1], [10, 1]])
    assert cdnv(f, [0, 0, 1, 1]) == pytest.approx((1 + 1) / (2 * 10 ** 2))
    # three classes: the mean over ordered pairs = the mean over unordered pairs
    f3 = torch.cat([f, torch.tensor([[0., 5], [0, 7]])])  # class 2: mean (0, 6), Var 1
    y3 = [0, 0, 1, 1, 2, 2]
    pairs = [2 / (2 * 100), 2 / (2 * 36), 2 / (2 * (100 + 36))]
    assert cdnv(f3, y3) == pytest.approx(sum(pairs) / 3)


@pytest.mark.parametrize('distance', [10.0, 1.0])
def test_cdnv_isotropic_gaussians_closed_form(distance):
    # N(mu_i, s^2 I_d): Var_i -> d s^2, so CDNV -> d s^2 / |mu_1 - mu_2|^2
    g = torch.Generator().manual_seed(0)
    d, s, n = 8, 1.5, 20000
    mu = torch.zeros(d)
    mu[0] = distance
    f = torch.cat([s * torch.randn(n, d, generator=g), mu + s * torch.randn(n, d, generator=g)])
    y = torch.cat([torch.zeros(n), torch.ones(n)])
    assert cdnv(f, y) == pytest.approx(d * s ** 2 / distance ** 2, rel=0.03)


def test_ncc_accuracy_and_agreement():
    g = torch.Generator().manual_seed(1)
    centres = 10 * torch.eye(3)
    y = torch.arange(3).repeat_interleave(20)
    f = centres[y] + 0.1 * torch.randn(60, 3, generator=g)
    assert ncc_accuracy(f, y) == 1.0
    # handcrafted: means (0, 0) and (4, 0); NCC predicts 0, 0, 1, 1, and 1 for (3, 0),
    # which is labelled 0. Network predictions: 0, 1, 1, 1, 0.
    f = torch.tensor([[-1., 0], [1, 0], [4, 1], [4, -1], [3, 0]])
    labels = [0, 0, 1, 1, 0]   # class 0 mean: (1, 0); class 1 mean: (4, 0)
    # NCC: (-1,0)->0, (1,0)->0, (4,1)->1, (4,-1)->1, (3,0): |3-1|=2 vs 1 -> 1
    assert ncc_accuracy(f, labels) == pytest.approx(4 / 5)
    assert ncc_agreement(f, labels, [0, 1, 1, 1, 0]) == pytest.approx(3 / 5)


def test_rank_and_effective_rank():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(50, 3, generator=g) @ torch.randn(3, 10, generator=g)
    assert feature_rank(a) == 3
    # float64 features get float64's tolerance; a float32 product cast to float64 keeps
    # float32 rounding noise above it (full rank), as numpy.linalg.matrix_rank would say
    a64 = torch.randn(50, 3, generator=g, dtype=torch.float64) @ torch.randn(
        3, 10, generator=g, dtype=torch.float64)
    assert feature_rank(a64) == 3
    assert feature_rank(a.double()) == 10
    assert feature_rank(a.double(), rtol=1e-5) == 3
    for n in (1, 4, 16):
        assert effective_rank(torch.eye(n)) == pytest.approx(n)
        assert feature_rank(torch.eye(n)) == n
    assert effective_rank(torch.ones(5, 7)) == pytest.approx(1.0)  # rank 1
    # two singular values 3 and 1: p = (3/4, 1/4)
    p = torch.tensor([0.75, 0.25])
    assert effective_rank(torch.diag(torch.tensor([3., 1.]))) == pytest.approx(
        float(torch.exp(-(p * p.log()).sum())))


@pytest.mark.parametrize('delta', [None, 0.05])
def test_vcreg_terms_sum_to_the_loss(delta):
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64) * torch.linspace(0.2, 2, 6)[:, None, None]
    v, c = vcreg_terms(x, eps=1e-4, delta=delta, channel_dim=1)
    assert v > 0 and c > 0
    for alpha, beta in ((1.0, 1.0), (0.7, 2.5)):
        assert float(alpha * v + beta * c) == pytest.approx(
            float(vcreg_loss(x, alpha, beta, 1e-4, delta, 1)), rel=1e-12)
    tokens = x.flatten(2).transpose(1, 2)  # (N, L, C)
    v2, c2 = vcreg_terms(tokens, 1e-4, delta, channel_dim=-1)
    assert float(v2) == pytest.approx(float(v)) and float(c2) == pytest.approx(float(c))


def test_metric_on_handmade_data_samples():
    metric = METRICS.build(dict(type='FeatureCollapseMetric'))
    assert isinstance(metric, FeatureCollapseMetric)
    f = torch.tensor([[-1., 0], [1, 0], [10, -1], [10, 1]])
    samples = [dict(gt_label=torch.tensor([y]), pred_label=torch.tensor([p]),
                    layer_features={'neck': f[i]}, layer_stats={'neck/x_error': float(i)})
               for i, (y, p) in enumerate(zip([0, 0, 1, 1], [0, 1, 1, 1]))]
    metric.process({}, samples)
    out = metric.evaluate(4)
    assert out['collapse/neck/cdnv'] == pytest.approx(0.01)
    assert out['collapse/neck/ncc_acc'] == 1.0
    assert out['collapse/neck/ncc_agreement'] == pytest.approx(0.75)
    assert out['collapse/neck/rank'] == 2
    assert out['collapse/neck/x_error'] == pytest.approx(1.5)
    with pytest.raises(KeyError, match='LayerFeatureHook'):
        metric.process({}, [dict(gt_label=torch.tensor([0]))])


# --------------------------------------------------------------------------- the val hook


def _tiny_classifier(regularizers=None):
    arch = dict(
        type='ImageClassifier', _scope_='mmpretrain',
        backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64, topk=(1, )),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=3))
    return MODELS.build(dict(type='RegularizedModel', architecture=arch,
                             regularizers=regularizers or {}, probe_input=(1, 3, 32, 32)))


def _cls_batch(n=6, seed=0):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randint(0, 255, (n, 3, 32, 32), generator=g).float(),
                data_samples=[DataSample().set_gt_label(i % 3) for i in range(n)])


def test_layer_feature_hook_feeds_the_metric_in_val():
    # at 32 px layer4's maps are 1x1, which rhoSIM refuses: layers 1-3
    model = _tiny_classifier(dict(sim=dict(
        type='RhoSIM', layers=['backbone.layer1.*', 'backbone.layer2.*', 'backbone.layer3.*'])))
    model.eval()
    hook = HOOKS.build(dict(type='LayerFeatureHook', layers=['backbone.layer4', 'neck'],
                            vcreg_layers='backbone.layer1.*'))
    assert isinstance(hook, LayerFeatureHook)
    runner = SimpleNamespace(model=model)
    hook.before_val_epoch(runner)
    evaluator = Evaluator([dict(type='FeatureCollapseMetric')])
    rng = torch.get_rng_state()
    with torch.no_grad():
        for seed in range(2):
            batch = _cls_batch(seed=seed)
            evaluator.process(model.val_step(batch), batch)
        # a forward in another mode (tensor) is not recorded
        model(batch['inputs'], mode='tensor')
        assert not hook._features and not hook._stats
    assert torch.equal(rng, torch.get_rng_state())  # rhoSIM's val sampling used a forked RNG
    out = evaluator.evaluate(12)
    hook.after_val_epoch(runner, out)
    assert not hook._handles  # removed at the end of the epoch
    for layer in ('backbone.layer4', 'neck'):
        for stat in ('cdnv', 'ncc_acc', 'ncc_agreement', 'rank', 'erank'):
            assert math.isfinite(out[f'collapse/{layer}/{stat}']), (layer, stat)
    assert 1 <= out['collapse/neck/rank'] <= 12
    blocks = [f'backbone.layer{i}.{j}' for i in range(1, 4) for j in range(2)]
    errors = {b: out[f'collapse/{b}/sim_error'] for b in blocks}
    # every block has a signal, layer3's 2x2 maps too (rhoSIM samples >= 2 positions)
    assert all(errors[b] > 0.1 for b in blocks[:4]), errors
    assert all(errors[b] > 0 for b in blocks[4:]), errors
    assert out['collapse/backbone.layer1.0/vcreg_covariance'] > 0
    assert 'collapse/backbone.layer2.0/vcreg_variance' not in out
    # one batch: the VCReg terms are those of the block output captured independently
    seen = {}
    handle = model.architecture.backbone.layer1[0].register_forward_hook(
        lambda m, a, o: seen.setdefault('out', o.clone()))
    hook.attach(model)
    ev = Evaluator([dict(type='FeatureCollapseMetric', metrics=['rank'])])
    with torch.no_grad():
        batch = _cls_batch(seed=0)
        ev.process(model.val_step(batch), batch)
    hook.detach()
    handle.remove()
    v, c = vcreg_terms(seen['out'], channel_dim=1)
    one = ev.evaluate(6)
    assert one['collapse/backbone.layer1.0/vcreg_variance'] == pytest.approx(float(v), rel=1e-5)
    assert one['collapse/backbone.layer1.0/vcreg_covariance'] == pytest.approx(float(c), rel=1e-5)
    assert 'collapse/neck/cdnv' not in one and 'collapse/neck/rank' in one


# --------------------------------------------------------------------------- GradNormHook


class TinyNet(BaseModel):
    """backbone (two stages) + head; train_step records clip_grad_norm_'s total norm
    right after backward, independently of the hook."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 1)
        self.seen = []

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.head(self.backbone(inputs)).squeeze(-1)
        return dict(loss=(out - labels).square().mean()) if mode == 'loss' else out

    def train_step(self, data, optim_wrapper):
        data = self.data_preprocessor(data, True)
        losses = self(**data, mode='loss')
        loss, log_vars = self.parse_losses(losses)
        loss.backward()
        self.seen.append(float(torch.nn.utils.clip_grad_norm_(self.parameters(), math.inf)))
        wrappers = (list(optim_wrapper.values()) if isinstance(optim_wrapper, OptimWrapperDict)
                    else [optim_wrapper])
        for ow in wrappers:
            ow.step()
            ow.zero_grad()
        return log_vars


class Points(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(4, generator=g), labels=torch.tensor(float(i % 2)))


def _runner(work_dir, name, hook_cfg, clip_grad=None):
    torch.manual_seed(0)
    return Runner(
        model=TinyNet(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dict(dataset=Points(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=4, collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5, momentum=0.9),
                           clip_grad=clip_grad),
        custom_hooks=[hook_cfg],
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1), checkpoint=None),
        default_scope='mmengine')


def _scalars(work_dir):
    files = sorted(work_dir.glob('*/vis_data/scalars.json'))
    assert files, f'no scalars.json under {work_dir}'
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_grad_norm_hook_logs_the_total_norm(tmp_path):
    runner = _runner(tmp_path, 'plain', dict(type='GradNormHook', ema_momentum=0.5))
    runner.train()
    expected = runner.model.seen
    assert len(expected) == 2
    hub = runner.message_hub.get_scalar('train/grad_norm').data[0]
    assert list(hub) == pytest.approx(expected, rel=1e-6)
    records = [r for r in _scalars(tmp_path) if 'iter' in r]
    assert [r['grad_norm'] for r in records] == pytest.approx(expected, rel=1e-6)
    # EMA with m = 0.5 starting at the first value
    assert records[1]['grad_norm_ema'] == pytest.approx(0.5 * expected[0] + 0.5 * expected[1])
    # default stages: backbone.0, backbone.2 (backbone.1 has no parameters) and head
    stages = {k: v for k, v in records[0].items() if k.startswith('grad_norm/')}
    assert set(stages) == {'grad_norm/backbone.0', 'grad_norm/backbone.2', 'grad_norm/head'}
    assert math.sqrt(sum(v * v for v in stages.values())) == pytest.approx(expected[0], rel=1e-6)
    # the optimizer pre-hook and the log_processor entries are removed after training
    assert not runner.optim_wrapper.optimizer._optimizer_step_pre_hooks
    assert runner.log_processor.custom_cfg == []


def test_grad_norm_hook_logs_the_norm_before_clipping(tmp_path):
    runner = _runner(tmp_path, 'clip', dict(type='GradNormHook', stages=['head']),
                     clip_grad=dict(max_norm=1e-3))
    runner.train()
    records = [r for r in _scalars(tmp_path) if 'iter' in r]
    assert [r['grad_norm'] for r in records] == pytest.approx(runner.model.seen, rel=1e-6)
    assert all(r['grad_norm'] > 1e-3 for r in records)  # clipping happened after measuring
    assert 'grad_norm/head' in records[0] and 'grad_norm/other' in records[0]
    assert '_clip_grad' not in vars(runner.optim_wrapper)  # the wrapper is restored


def _fake_runner(model, optim_wrapper):
    return SimpleNamespace(model=model, optim_wrapper=optim_wrapper,
                           message_hub=MessageHub.get_instance('test_evidence_fake'),
                           logger=MMLogger.get_instance('test_evidence_fake'))


def test_grad_norm_hook_with_several_optimizers_and_a_grad_scaler():
    torch.manual_seed(0)
    model = TinyNet()
    wrappers = OptimWrapperDict(
        backbone=OptimWrapper(torch.optim.SGD(model.backbone.parameters(), lr=0.1)),
        head=OptimWrapper(torch.optim.SGD(model.head.parameters(), lr=0.1)))
    runner = _fake_runner(model, wrappers)
    hook = GradNormHook()
    hook.before_train(runner)
    # a GradScaler (here on CPU) unscales before optimizer.step: the hook sees true grads
    scaler = torch.amp.GradScaler('cpu', init_scale=1024.0)
    x, y = torch.randn(8, 4), torch.randn(8)
    scaler.scale((model(x) - y).square().mean()).backward()
    expected = math.sqrt(sum(float(p.grad.square().sum()) for p in model.parameters())) / 1024
    head = math.sqrt(sum(float(p.grad.square().sum()) for p in model.head.parameters())) / 1024
    for ow in wrappers.values():
        scaler.step(ow.optimizer)
    scaler.update()
    hook.after_train_iter(runner, 0)
    hub = runner.message_hub
    assert hub.get_scalar('train/grad_norm').current() == pytest.approx(expected, rel=1e-5)
    assert hub.get_scalar('train/grad_norm/optim_head').current() == pytest.approx(head, rel=1e-5)
    assert hub.get_scalar('train/grad_norm/head').current() == pytest.approx(head, rel=1e-5)
    hook.after_train(runner)
    assert all(not ow.optimizer._optimizer_step_pre_hooks for ow in wrappers.values())


# --------------------------------------------------------------------------- tools


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'tools' / 'analysis' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_work_dir(path, reg: bool):
    run = path / '20260101_000000' / 'vis_data'
    run.mkdir(parents=True)
    lines = []
    for it in range(1, 21):
        rec = dict(lr=0.1, loss=2.0 / it, time=0.1, data_time=0.01, epoch=1 + it // 11,
                   iter=it, step=it, grad_norm=1 + 0.5 * math.sin(it),
                   grad_norm_ema=1.0, **{'grad_norm/backbone.layer1': 0.5})
        if reg:
            rec.update(loss_sim=0.05 / it, vcreg_value=0.03)
        lines.append(rec)
        if it in (10, 20):
            lines.append({'accuracy/top1': 50.0 + it + reg, 'collapse/neck/cdnv': 0.1 * it,
                          'collapse/neck/rank': 64.0, 'data_time': 0.1, 'time': 0.2,
                          'step': it // 10})
    (run / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in lines) + '\n')
    return path


def test_plot_curves_and_metrics_table(tmp_path):
    base = _fake_work_dir(tmp_path / 'baseline', reg=False)
    reg = _fake_work_dir(tmp_path / 'rhosim_vcreg', reg=True)
    plot = _tool('plot_curves')
    written = plot.main([str(base), str(reg), '--out-dir', str(tmp_path / 'plots')])
    assert sorted(p.rsplit('/', 1)[1] for p in written) == ['grad_norm.png', 'losses.png']
    for p in written:
        data = open(p, 'rb').read()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000
    train, _ = plot.load_runs([str(reg)])
    assert plot.curve_keys(train) == ['loss', 'loss_sim', 'vcreg_value']
    table = _tool('metrics_table').main([str(base), str(reg), '--out', str(tmp_path / 't.md')])
    lines = table.splitlines()
    assert lines[0] == '| metric | baseline | rhosim_vcreg |'
    assert '| accuracy/top1 | 70 | 71 |' in lines
    assert '| collapse/neck/cdnv | 2 | 2 |' in lines
    assert '| val step | 2 | 2 |' in lines
    assert not any(line.startswith('| time') for line in lines)
    assert (tmp_path / 't.md').read_text() == table

"""What a run tells its user: TensorBoard event files, the layers each regularizer acts on
and its gradient share, the end-of-run summary, a quiet start-up, and a tools/train.py
whose --help answers before torch is imported."""
import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn

from conftest import ROOT, run_tool
from sslreg.hooks import RegularizerHook
from sslreg.regularizers import RhoSIM, collecting, pop_terms, probing, report_lines
from sslreg.regularizers.report import compact_names

pytestmark = pytest.mark.timeout(600)

DEMO = 'configs/demo/resnet18_digits_cub_rhosim_vcreg.py'
HEAVY = ('torch', 'sslreg', 'mmpretrain', 'mmseg', 'mmdet', 'mmcv', 'mmengine.runner')


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_help_prints_usage_without_importing_torch(tool):
    """--help is answered from the light command line (tools/_cli.py): no torch, no
    OpenMMLab framework, no sslreg (times are measured, not asserted)."""
    path = str(ROOT / 'tools' / tool)
    code = (f'import runpy, sys\nsys.path.insert(0, {str(ROOT / "tools")!r})\n'
            f'sys.argv = [{path!r}, "--help"]\n'
            'try:\n    runpy.run_path(sys.argv[0], run_name="__main__")\n'
            'except SystemExit as exit:\n    assert exit.code == 0, exit.code\n'
            f'print("LOADED", sorted(m for m in {HEAVY!r} if m in sys.modules))\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'}
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # mmengine's pkg_resources deprecation notices are filtered (tools/_cli.py)
    assert 'pkg_resources' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.startswith(f'usage: {tool}'), proc.stdout[:500]
    for option in ('--cfg-options', '--work-dir', '--launcher', '--quiet', '--non-strict'):
        assert option in proc.stdout
    assert 'LOADED []' in proc.stdout, proc.stdout[-500:]
    # and as a user runs it
    assert run_tool(f'tools/{tool}', '--help').startswith(f'usage: {tool}')


def test_compact_names():
    names = [f'backbone.layer{s}.{b}' for s in range(1, 5) for b in range(2)]
    assert compact_names(names) == 'backbone.layer1.0 … backbone.layer4.1'
    assert compact_names(names[:3]) == 'backbone.layer1.0, backbone.layer1.1, backbone.layer2.0'


class Toy(BaseModel):
    """stem + 2 conv blocks + linear head; task loss: mean squared head output."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.backbone.layers = nn.Sequential(
            nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(5, 6, 3, padding=1), nn.Tanh()))
        self.head = nn.Linear(6, 3)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feat = self.backbone.layers(self.backbone.stem(inputs)).mean((2, 3))
        out = self.head(feat)
        return dict(loss=out.square().mean()) if mode == 'loss' else out


def _toy_with_rhosim():
    torch.manual_seed(0)
    model = Toy().double()
    reg = RhoSIM(layers='backbone.layers.1', rho=0.5, loss_weight=0.5)
    assert reg.attach(model) == ['backbone.layers.1']
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad(), probing([reg]):
        model(x)
    outs = []
    model.backbone.layers[1].register_forward_hook(lambda m, a, o: outs.append(o))
    return model, reg.double(), x, outs


def _step(model, reg, x, seed):
    torch.manual_seed(seed)  # the same token sample
    with collecting([reg]):
        task = model(x, mode='loss')['loss']
    return task, pop_terms({'sim': reg})['loss_sim']


def test_rhosim_grad_share_is_measured_on_the_first_step_only():
    """||g_sim|| / ||g_downstream|| at the tapped block output equals autograd's on a twin
    model: g_sim the gradient of the ρSIM loss there, g_downstream the rest."""
    model, reg, x, _ = _toy_with_rhosim()
    assert reg.last_grad_norms is None and reg.measures_grad_share
    sum(_step(model, reg, x, seed=1)).backward()
    twin, twin_reg, _, outs = _toy_with_rhosim()
    task, sim = _step(twin, twin_reg, x, seed=1)
    g_sim, = torch.autograd.grad(sim, outs[0], retain_graph=True)
    g_all, = torch.autograd.grad(task + sim, outs[0])
    direct = (g_sim.norm().item(), (g_all - g_sim).norm().item())
    assert direct[0] > 0 and direct[1] > 0
    assert reg.last_grad_count == 1
    assert reg.last_grad_norms == pytest.approx(direct, rel=1e-9)
    assert reg.last_grad_share == pytest.approx(direct[0] / direct[1], rel=1e-9)
    sum(_step(model, reg, x, seed=2)).backward()  # not measured: the first step's stay
    assert reg.last_grad_norms == pytest.approx(direct, rel=1e-9)
    line, = report_lines({'sim': reg}, 'grad_share')
    assert f'sim: {direct[0] / direct[1]:.4g} = ||g_sim|| / ||g_downstream||' in line
    assert 'at the 1 regularized tensor ' in line and 'RhoSIM, rho=0.5' in line
    reg.reset_grad_share()  # measured again at the next step
    sum(_step(model, reg, x, seed=2)).backward()
    assert reg.last_grad_count == 1 and reg.last_grad_norms != pytest.approx(direct)


from conftest import FakeRunner as _FakeRunner  # noqa: E402


def test_hook_reports_layers_then_grad_share_one_line_per_regularizer():
    torch.manual_seed(0)
    model = Toy()
    runner = _FakeRunner(model)
    hook = RegularizerHook(regularizers=dict(
        v=dict(type='VCReg', layers='backbone.layers.*', alpha=0.4, beta=0.03),
        w=dict(type='VCReg', layers='backbone.stem', mode='explicit')))
    hook.before_train(runner)
    assert runner.logger.lines == [
        'Regularizer v (VCReg) on 2 layers: backbone.layers.0, backbone.layers.1',
        'Regularizer w (VCReg) on 1 layer: backbone.stem']
    losses = model(torch.randn(2, 3, 8, 8), mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    hook.after_train_iter(runner, 0)
    hook.after_train_iter(runner, 1)
    shares = runner.logger.lines[2:]
    assert len(shares) == 2, shares
    v, w = hook.regularizers['v'], hook.regularizers['w']
    assert shares[0].startswith('Regularizer gradient share after the first training '
                                f'iteration, v: {v.last_grad_share:.4g} = ')
    assert 'at the 2 regularized tensors' in shares[0] and 'mode=fast' in shares[0]
    assert f'w: {w.last_grad_share:.4g}' in shares[1] and 'mode=explicit' in shares[1]


def test_neck_and_unmeasured_lines():
    model = MODELS.build(dict(
        type='RegularizedModel', probe_input=(1, 3, 8, 8),
        architecture=dict(type='ImageClassifier',
                          backbone=dict(type='ResNet', depth=18, out_indices=(2, 3)),
                          neck=dict(type='SIMNeck', in_channels=[256, 512], name='simneck'),
                          _scope_='mmpretrain')))
    assert report_lines(model._named, 'layers', model.architecture) == [
        "Regularizer simneck (SIMNeck) in the model at 'neck', 1 level pair"]
    assert report_lines(model._named, 'grad_share') == [
        'Regularizer gradient share after the first training iteration, simneck: not '
        'measured (SIMNeck)']


def _event_scalars(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = glob.glob(str(log_dir / 'vis_data' / 'events.out.tfevents.*'))
    assert events, f'no TensorBoard event file under {log_dir}/vis_data'
    acc = EventAccumulator(str(log_dir / 'vis_data'))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()['scalars']}


def test_demo_run_tensorboard_layer_report_summary_quiet(small_data, tmp_path):
    """The classifier demo for two iterations and one evaluation, with --quiet."""
    out = run_tool('tools/train.py', DEMO, '--work-dir', tmp_path, '--quiet', '--cfg-options',
                   'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=64',
                   'val_dataloader.dataset.indices=32', 'default_hooks.logger.interval=1',
                   'default_hooks.checkpoint.save_best=auto')
    log_dir, = [p for p in tmp_path.iterdir() if p.is_dir() and re.fullmatch(r'\d{8}_\d{6}',
                                                                              p.name)]
    # TensorBoard: the logged scalars, one point per training iteration
    tb = _event_scalars(log_dir)
    assert [step for step, _ in tb['loss']] == [1, 2]
    for key in ('loss_task', 'loss_sim', 'vcreg_value', 'lr'):
        assert [step for step, _ in tb[key]] == [1, 2], key
    assert len(tb['accuracy/top1']) == 1
    # the same values as scalars.json's (LocalVisBackend)
    import json
    records = [json.loads(line) for line in
               (log_dir / 'vis_data' / 'scalars.json').read_text().splitlines()]
    assert [r['loss'] for r in records if 'loss' in r] == pytest.approx(
        [value for _, value in tb['loss']], rel=1e-6)
    # one line per regularizer: its layers (once) and, after iteration 1, its share
    assert out.count('Regularizer sim (RhoSIM) on 6 layers: '
                     'backbone.layer1.0 … backbone.layer3.1') == 1
    assert out.count('Regularizer vcreg (VCReg) on 8 layers: '
                     'backbone.layer1.0 … backbone.layer4.1') == 1
    shares = dict(re.findall(r'first training iteration, (\w+): ([\d.e+-]+) = ', out))
    assert set(shares) == {'sim', 'vcreg'} and all(float(v) > 0 for v in shares.values())
    assert 'at the 6 regularized tensors' in out and 'at the 8 regularized tensors' in out
    assert out.index('Regularizer sim (RhoSIM)') < out.index('Epoch(train) [1][1/2]')
    # the summary
    summary = out[out.index('Run summary'):]
    assert f'work_dir: {tmp_path}' in summary
    best = re.search(r'best accuracy/top1 = ([\d.]+) at epoch 1', summary)
    assert best and float(best.group(1)) == pytest.approx(float(
        re.findall(r'accuracy/top1: ([\d.]+)', out)[-1]), abs=1e-2)
    assert f'checkpoints: last {tmp_path / "epoch_1.pth"}' in summary
    best_ckpt = re.search(r'best (\S+best_accuracy_top1_epoch_1\.pth)', summary)
    assert best_ckpt and Path(best_ckpt.group(1)).exists()
    assert re.search(r'last logged losses \(.*\): loss [\d.]+, loss_task [\d.]+, '
                     r'loss_sim [\d.]+; regularizer statistics: vcreg_value [\d.]+', summary)
    assert f'tensorboard --logdir {log_dir / "vis_data"}' in summary
    # --quiet: the config dump and the hook table are in the log file only
    log_file = (log_dir / f'{log_dir.name}.log').read_text()
    for dump in ('Config:\n', 'Hooks will be executed in the following order'):
        assert dump in log_file and dump not in out, dump
    assert 'System environment:' in out

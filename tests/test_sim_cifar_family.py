"""The SIM paper's CIFAR-10 / CIFAR-100 / SVHN family (Table 2), its "regularization
strategies" (rhoSIM with label smoothing, Mixup, CutMix), and ``tools/sweep.py`` (the
Fig. 3 / Table 10 ablations, VCReg's alpha/beta grid).

- Every config of ``configs/sim/cifar/`` is one of the family's names (and so is built by
  ``tests/test_configs.py``); its recipe is App. E.5's; each rhoSIM config is its
  baseline with only the model wrapped (the paper's rho, lambda, preset ``'paper'``),
  tapping every residual block of its depth; the strategy configs change only the loss /
  batch augments, and a training step of each (with rhoSIM) gets soft or smoothed labels.
- A rhoSIM CIFAR-100 config trains on the small digits layout (``data/small/
  digits_cifar100``, mmpretrain's CIFAR reader without md5 checks) through
  ``tools/train.py``, one epoch of 2 iterations.
- ``tools/sweep.py`` writes one loadable config per grid point (a key inside a list
  sets the whole list), refuses a key whose parent is not in the config, and runs a
  2-point rho grid of the SVHN rhoSIM config on the digits .mat files (sslreg's
  ``SVHN``), each point a ``tools/train.py`` run, tabulating the last val metric of
  each run.
"""
import copy
import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from conftest import ROOT, run_tool

pytestmark = pytest.mark.timeout(600)

CIFAR = ROOT / 'configs/sim/cifar'
DEPTHS = (18, 34, 50, 101, 152)
BLOCKS = {18: 8, 34: 16, 50: 16, 101: 33, 152: 50}  # residual blocks of ResNet_CIFAR
DATASETS = ('cifar10', 'cifar100', 'svhn')
STRATEGIES = ('labelsmooth', 'mixup', 'cutmix')
TABLE2 = [f'resnet{d}_{s}{r}.py' for d in DEPTHS for s in DATASETS for r in ('', '_rhosim')]
STRATEGY_CONFIGS = [f'resnet18_{s}_{k}{r}.py' for s in ('cifar10', 'cifar100')
                    for k in STRATEGIES for r in ('', '_rhosim')]
#: App. E.5: weight decay, MultiStepLR milestones, gamma (SVHN: the CIFAR-10 recipe)
RECIPES = {'cifar10': (1e-4, [100, 150], 0.1), 'cifar100': (5e-4, [60, 120, 160], 0.2),
           'svhn': (1e-4, [100, 150], 0.1)}
DATA = {'cifar10': ('CIFAR10', 'data/cifar10', 10), 'cifar100': ('CIFAR100', 'data/cifar100', 100),
        'svhn': ('SVHN', 'data/svhn', 10)}
RHOSIM = dict(type='RhoSIM', layers='backbone.layer*.*', rho=0.2, preset='paper',
              loss_weight=5e-3)
SMALL_TYPES = {'cifar10': 'UncheckedCIFAR10', 'cifar100': 'UncheckedCIFAR100', 'svhn': 'SVHN'}
TOOL_ENV = {'OMP_WAIT_POLICY': 'PASSIVE'}  # see tests/test_task_families.py


def small_options(dataset: str, n: int = 32):
    """--cfg-options for one epoch of 2 iterations (32 images, batch 16) on the small
    digits layout of ``dataset``, validated on 32 test images."""
    opts = ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=16',
            'val_dataloader.batch_size=32', 'default_hooks.logger.interval=1']
    for split in ('train', 'val'):
        opts += [f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.dataset.type={SMALL_TYPES[dataset]}',
                 f'{split}_dataloader.dataset.data_root=data/small/digits_{dataset}',
                 f'{split}_dataloader.dataset.indices={n}']
    return opts


def load(name: str) -> Config:
    return Config.fromfile(str(CIFAR / name))


def plain(node):
    """A config value as plain dicts/lists, without the ``_scope_`` MMEngine stamps into
    what a ``mmpretrain::`` base defines."""
    if hasattr(node, 'to_dict'):
        node = node.to_dict()
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items() if k != '_scope_'}
    if isinstance(node, (list, tuple)):
        return type(node)(plain(v) for v in node)
    return node


def without(cfg: Config, *keys) -> dict:
    d = plain(cfg)
    for key in keys:
        d.pop(key, None)
    return d


def build(cfg: Config):
    init_default_scope(cfg.default_scope)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg['data_preprocessor'] = copy.deepcopy(cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def load_sweep():
    spec = importlib.util.spec_from_file_location('sslreg_sweep_tool', ROOT / 'tools/sweep.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True, scope='module')
def cached_metafiles():
    """A ``mmpretrain::`` base costs MMEngine ~0.2 s: it parses all 340 of mmpretrain's
    metafile.yml each time to look the name up. They do not change during these tests;
    read each once (4 such bases per config here)."""
    import functools
    import mmengine.config.utils as mm_utils
    original = mm_utils.load
    cached = functools.lru_cache(maxsize=None)(lambda path: original(path))
    mm_utils.load = lambda path, *args, **kwargs: (
        cached(path) if not args and not kwargs and str(path).endswith('.yml')
        else original(path, *args, **kwargs))
    yield
    mm_utils.load = original


@pytest.fixture(autouse=True)
def no_yapf(monkeypatch):
    """MMEngine yapf-formats configs it prints or dumps (seconds each here); not needed."""
    import mmengine.config.config as mm_config
    monkeypatch.setattr(mm_config, 'FormatCode', lambda text, **kwargs: (text, False))


# ---------------------------------------------------------------------------- configs
def test_the_family_is_exactly_these_configs_and_test_configs_builds_them():
    import test_configs
    shipped = sorted(p.name for p in CIFAR.glob('*.py'))
    assert shipped == sorted(TABLE2 + STRATEGY_CONFIGS)
    built = {p.relative_to(ROOT).as_posix() for p in test_configs.CONFIGS}
    assert {f'configs/sim/cifar/{n}' for n in shipped} <= built
    assert not any('configs/sim/cifar/_base_' in p for p in built)


@pytest.mark.parametrize('depth', DEPTHS)
@pytest.mark.parametrize('dataset', DATASETS)
def test_table2_recipe_and_rhosim_twin(depth, dataset):
    """App. E.5's recipe on mmpretrain's stock pieces; the rhoSIM twin changes only the
    model: the baseline's model wrapped, rho=0.2, lambda=5e-3, preset 'paper'."""
    base = load(f'resnet{depth}_{dataset}.py')
    wd, milestones, gamma = RECIPES[dataset]
    dataset_type, data_root, num_classes = DATA[dataset]
    assert plain(base.optim_wrapper.optimizer) == dict(type='SGD', lr=0.1, momentum=0.9,
                                                weight_decay=wd)
    assert plain(base.param_scheduler) == dict(type='MultiStepLR', by_epoch=True,
                                        milestones=milestones, gamma=gamma)
    assert base.train_cfg.max_epochs == 200 and base.train_dataloader.batch_size == 128
    assert base.auto_scale_lr.base_batch_size == 128
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'test'),
                          ('test_dataloader', 'test')):
        assert base[loader].dataset.type == dataset_type
        assert base[loader].dataset.data_root.rstrip('/') == data_root
        assert base[loader].dataset.split == split
    assert plain(base.model.backbone) == dict(type='ResNet_CIFAR', depth=depth, num_stages=4,
                                       out_indices=(3,), style='pytorch')
    assert base.model.head.num_classes == base.data_preprocessor.num_classes == num_classes
    flips = [t for t in base.train_dataloader.dataset.pipeline if t['type'] == 'RandomFlip']
    assert bool(flips) == (dataset != 'svhn')  # a mirrored digit is another digit

    sim = load(f'resnet{depth}_{dataset}_rhosim.py')
    assert without(sim, 'model') == without(base, 'model')
    assert sim.model.type == 'RegularizedModel'
    assert plain(sim.model.architecture) == plain(base.model)
    assert tuple(sim.model.probe_input) == (1, 3, 32, 32)
    assert plain(sim.model.regularizers) == dict(sim=RHOSIM)
    header = ''.join(line for line in (CIFAR / f'resnet{depth}_{dataset}_rhosim.py')
                     .read_text().splitlines(True) if line.startswith('#'))
    assert "preset='paper'" in header and "preset='authors_code'" in header


@pytest.mark.parametrize('depth', DEPTHS)
def test_rhosim_taps_every_residual_block_at_32px(depth):
    model = build(load(f'resnet{depth}_cifar100_rhosim.py'))
    sim = model.regularizers['sim']
    assert len(sim.layer_names) == BLOCKS[depth]
    assert sim.layer_names[0] == 'backbone.layer1.0' and sim.layer_names[-1].startswith(
        'backbone.layer4.')
    assert model.architecture.head.fc.out_features == 100


@pytest.mark.parametrize('dataset', ('cifar10', 'cifar100'))
@pytest.mark.parametrize('strategy', STRATEGIES)
def test_strategy_configs_change_only_the_loss_or_batch_augments(dataset, strategy):
    baseline = load(f'resnet18_{dataset}.py')
    cfg = load(f'resnet18_{dataset}_{strategy}.py')
    assert without(cfg, 'model') == without(baseline, 'model')
    model, ref = plain(cfg.model), plain(baseline.model)
    n = DATA[dataset][2]
    if strategy == 'labelsmooth':
        assert model['head'].pop('loss') == dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                                 num_classes=n, loss_weight=1.0)
    else:
        assert model['head'].pop('loss') == dict(type='CrossEntropyLoss', loss_weight=1.0,
                                                 use_soft=True)
        kind = {'mixup': 'Mixup', 'cutmix': 'CutMix'}[strategy]
        assert model.pop('train_cfg') == dict(augments=dict(type=kind, alpha=1.0))
    ref['head'].pop('loss')
    assert model == ref
    sim = load(f'resnet18_{dataset}_{strategy}_rhosim.py')
    assert without(sim, 'model') == without(cfg, 'model')
    assert plain(sim.model.architecture) == plain(cfg.model)
    assert plain(sim.model.regularizers) == dict(sim=RHOSIM)


@pytest.mark.parametrize('strategy', STRATEGIES)
def test_strategy_with_rhosim_trains_one_step(strategy):
    """One train_step of the CIFAR-100 strategy + rhoSIM model: Mixup/CutMix reach the
    loss as soft labels through the wrapper's (the architecture's) preprocessor, label
    smoothing through the head's loss; rhoSIM's term is there."""
    from mmengine.optim import OptimWrapper
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    model = build(load(f'resnet18_cifar100_{strategy}_rhosim.py'))
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    data = dict(inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in labels],
                data_samples=[DataSample().set_gt_label(int(y)) for y in labels])
    batch = model.data_preprocessor(copy.deepcopy(data), True)
    samples = batch['data_samples']
    if strategy == 'labelsmooth':
        assert 'gt_score' not in samples[0]
        assert type(model.architecture.head.loss_module).__name__ == 'LabelSmoothLoss'
    else:
        scores = torch.stack([s.gt_score for s in samples])
        assert scores.shape == (8, 100)
        torch.testing.assert_close(scores.sum(1), torch.ones(8))
        assert (scores.max(1).values < 1).any()  # mixed: not one-hot
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    losses = model.train_step(data, optim)
    assert {'loss_task', 'loss_sim'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())


# ----------------------------------------------------------------- runs on small data
def _run_train(config: str, dataset: str, work_dir: Path) -> str:
    return run_tool('tools/train.py', config, '--work-dir', work_dir, '--quiet',
                    '--cfg-options', *small_options(dataset), env=TOOL_ENV)


def _last_val(work_dir: Path) -> dict:
    records = [json.loads(line) for path in sorted(work_dir.glob('*/vis_data/scalars.json'))
               for line in path.read_text().splitlines() if line.strip()]
    val = [r for r in records if 'iter' not in r]
    assert val, f'no val record in {work_dir}'
    return val[-1]


def test_rhosim_cifar100_trains_on_the_digits_layout(small_data, tmp_path):
    out = _run_train('configs/sim/cifar/resnet18_cifar100_rhosim.py', 'cifar100', tmp_path)
    assert 'Regularizer sim (RhoSIM) on 8 layers' in out
    assert 'loss_sim:' in out and 'Epoch(train) [1][2/2]' in out
    assert 0 <= _last_val(tmp_path)['accuracy/top1'] <= 100
    assert (tmp_path / 'epoch_1.pth').is_file()
    dumped = Config.fromfile(str(tmp_path / 'resnet18_cifar100_rhosim.py'))
    assert dumped.train_dataloader.dataset.type == 'UncheckedCIFAR100'
    assert dumped.model.architecture.head.num_classes == 100


# ---------------------------------------------------------------------- tools/sweep.py
def test_sweep_writes_one_loadable_config_per_point(tmp_path):
    """Table 10's preset: 7 loss kinds x 2 (standardized or not) = 14 configs, each the
    base config with exactly its point set."""
    sweep = load_sweep()
    assert sweep.main(['--preset', 'sim-loss-kind', '--out-dir', str(tmp_path),
                       '--dry-run']) == 0
    written = sorted((tmp_path / 'configs').glob('*.py'))
    assert len(written) == 14
    base = load('resnet18_cifar100_rhosim.py')
    seen = set()
    for path in written:
        cfg = Config.fromfile(str(path))
        sim = cfg.model.regularizers.sim
        seen.add((sim.kind, sim.normalize))
        expected = copy.deepcopy(base)
        expected.merge_from_dict({'model.regularizers.sim.kind': sim.kind,
                                  'model.regularizers.sim.normalize': sim.normalize})
        assert cfg.to_dict() == expected.to_dict()
    assert seen == {(k, n) for k in ('mse', 'l2', 'l1', 'smooth_l1', 'cos', 'kl', 'wasserstein')
                    for n in (True, False)}
    assert not (tmp_path / 'results.csv').exists()  # a dry run runs and tabulates nothing


def test_sweep_serves_the_vcreg_grid_and_list_keys(tmp_path):
    """VCReg's App. C.1 grid (4 alphas x 5 betas) on the ImageNet VCReg config, plus a key
    inside a list (custom_hooks.0...): 20 points, the list written whole."""
    sweep = load_sweep()
    assert sweep.main(['--preset', 'vcreg-alpha-beta', '--grid', 'custom_hooks.0.priority=LOW',
                       '--out-dir', str(tmp_path), '--dry-run']) == 0
    written = sorted((tmp_path / 'configs').glob('*.py'))
    assert len(written) == 20
    grid = set()
    for path in (written[0], written[7], written[-1]):
        cfg = Config.fromfile(str(path))
        assert cfg.custom_hooks == [dict(type='RegularizerHook', priority='LOW')]
        grid.add((cfg.model.regularizers.vcreg.alpha, cfg.model.regularizers.vcreg.beta))
    assert grid == {(0.16, 0.01), (0.32, 0.04), (1.28, 0.16)}  # first key slowest
    assert written[7].name == '07_alpha-0.32_beta-0.04_priority-LOW.py'


def test_sweep_refuses_keys_the_config_does_not_have(tmp_path):
    sweep = load_sweep()
    with pytest.raises(SystemExit, match=r"model\.regularizers\.0.*keys: \['sim'\]"):
        sweep.main([str(CIFAR / 'resnet18_cifar10_rhosim.py'), '--grid',
                    'model.regularizers.0.rho=0.1,0.2', '--out-dir', str(tmp_path)])
    with pytest.raises(SystemExit, match="'regularizers' does not exist in the config"):
        sweep.main([str(CIFAR / 'resnet18_cifar10_rhosim.py'), '--grid',
                    'regularizers.sim.rho=0.1', '--out-dir', str(tmp_path), '--dry-run'])
    assert sweep.split_values("mse,[1,2],(3,4),'a,b'") == ['mse', '[1,2]', '(3,4)', "'a,b'"]
    assert [sweep.parse_value(v) for v in ('1e-3', 'True', 'None', 'cos', '[1,2]', "'a,b'")] \
        == [1e-3, True, None, 'cos', [1, 2], 'a,b']


def test_sweep_runs_a_two_point_svhn_grid_and_tabulates(small_data, tmp_path, monkeypatch,
                                                        capsys):
    """Two rho points of the SVHN rhoSIM config, each a tools/train.py run on the digits
    .mat files (so this is also the SVHN family's small-data run); the table holds each
    run's last val accuracy, as its scalars.json has it."""
    for key, value in dict(TOOL_ENV, PYTHONWARNINGS='ignore').items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    sweep = load_sweep()
    args = ['configs/sim/cifar/resnet18_svhn_rhosim.py', '--grid',
            'model.regularizers.sim.rho=0.2,0.5', '--out-dir', str(tmp_path), '--cfg-options',
            *small_options('svhn'), 'default_hooks.checkpoint.save_last=False']
    assert sweep.main(args + ['--', '--quiet']) == 0
    out = capsys.readouterr().out
    assert '00_rho-0.2: done' in out and '01_rho-0.5: done' in out
    with open(tmp_path / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['point'] for r in rows] == ['00_rho-0.2', '01_rho-0.5']
    assert [float(r['rho']) for r in rows] == [0.2, 0.5]
    for row in rows:
        work_dir = tmp_path / 'work_dirs' / row['point']
        assert row['status'] == 'done'
        assert float(row['accuracy/top1']) == pytest.approx(_last_val(work_dir)['accuracy/top1'])
        dumped = Config.fromfile(str(work_dir / f"{row['point']}.py"))
        assert dumped.model.regularizers.sim.rho == float(row['rho'])
        assert dumped.train_dataloader.dataset.type == 'SVHN'
        assert dumped.train_dataloader.dataset.data_root == 'data/small/digits_svhn'
        log = (tmp_path / 'logs' / f"{row['point']}.log").read_text()
        assert 'loss_sim:' in log and 'Epoch(train) [1][2/2]' in log
    table = (tmp_path / 'results.md').read_text()
    assert '| point | rho | accuracy/top1 |' in table and table.count('| done |') == 2
    # the table again from the work dirs alone (runs done elsewhere), nothing trained
    (tmp_path / 'results.csv').unlink()
    assert sweep.main(args + ['--tabulate-only']) == 0
    with open(tmp_path / 'results.csv') as f:
        again = list(csv.DictReader(f))
    assert [r['accuracy/top1'] for r in again] == [r['accuracy/top1'] for r in rows]

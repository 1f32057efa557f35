"""The SIM paper's runs as configs: CUB backbones (ConvNeXt-B, 87.77 M), the 384 px
variants, the preset each rhoSIM config names, and the fundus vessel-class Dice
(``VesselDiceMetric``: mmseg's IoUMetric + ``Dice.vessel``)."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import METRICS, MODELS, init_default_scope

from conftest import ROOT

CUB = ROOT / 'configs/sim/cub'
FUNDUS = ROOT / 'configs/sim/fundus'
RHOSIM_CONFIGS = sorted(CUB.glob('*rhosim*.py')) + sorted(FUNDUS.glob('*rhosim*.py'))
CNN_384 = ['resnet50', 'densenet169', 'convnext-base']


def _strip_pretrained(node):
    if isinstance(node, dict):
        if isinstance(node.get('init_cfg'), dict) and node['init_cfg'].get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            _strip_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _strip_pretrained(value)


def _build_model(path: Path):
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model_cfg = copy.deepcopy(cfg.model)
    _strip_pretrained(model_cfg)
    return MODELS.build(model_cfg)


def _rhosim_dicts(cfg):
    regs = cfg.model.get('regularizers') or {}
    return {name: reg for name, reg in regs.items() if reg.get('type') == 'RhoSIM'}


# ---------------------------------------------------------------------------- CUB
def test_convnext_base_cub_is_the_papers_87_77m():
    """The paper's CUB ConvNeXt (Table 3: 87.77 M) is ConvNeXt-B with 200 classes."""
    model = _build_model(CUB / 'convnext-base_8xb8_cub.py')
    assert list(model.backbone.depths) == [3, 3, 27, 3]  # ConvNeXt-B
    assert list(model.backbone.channels) == [128, 256, 512, 1024]
    assert model.head.num_classes == 200 and model.head.fc.out_features == 200
    n = sum(p.numel() for p in model.parameters())
    assert n / 1e6 == pytest.approx(87.77, abs=0.05), n


def test_convnext_base_rhosim_builds():
    """The rhoSIM variant builds a head for each of ConvNeXt-B's 3+3+27+3 blocks."""
    model = _build_model(CUB / 'convnext-base_rhosim_8xb8_cub.py')
    sim = model.regularizers['sim']
    assert len(sim.layer_names) == 36
    assert sum(p.numel() for p in model.architecture.parameters()) / 1e6 == \
        pytest.approx(87.77, abs=0.05)
    assert sum(p.numel() for p in sim.parameters()) > 0


@pytest.mark.parametrize('arch', CNN_384)
@pytest.mark.parametrize('reg', ['', '_rhosim'])
def test_384px_variant_changes_only_the_sizes(arch, reg):
    """Each -384px file is its 448 px config with the sizes of mmpretrain's
    cub_bs8_384.py (short side 510, crop 384): every other entry and the model as is."""
    cfg = Config.fromfile(str(CUB / f'{arch}{reg}_8xb8_cub-384px.py'))
    parent = Config.fromfile(str(CUB / f'{arch}{reg}_8xb8_cub.py'))
    stock = get_config('mmpretrain::_base_/datasets/cub_bs8_384.py')
    assert cfg.model == parent.model
    assert cfg.optim_wrapper == parent.optim_wrapper
    assert cfg.param_scheduler == parent.param_scheduler
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ours = [dict(t) for t in cfg[loader].dataset.pipeline]
        old = [dict(t) for t in parent[loader].dataset.pipeline]
        ref = [dict(t) for t in stock[loader].dataset.pipeline]
        for t in ours + old + ref:
            t.pop('_scope_', None)
        assert ours == ref  # mmpretrain's own 384 px CUB pipeline
        assert [t['type'] for t in ours] == [t['type'] for t in old]
        changed = [(o, n) for o, n in zip(old, ours) if o != n]
        assert {o['type'] for o, _ in changed} <= {'Resize', 'RandomCrop', 'CenterCrop'}
        assert cfg[loader].dataset.split == parent[loader].dataset.split
    assert '__sizes_384px' not in cfg


# -------------------------------------------------------------------------- presets
@pytest.mark.parametrize('path', RHOSIM_CONFIGS, ids=[p.name for p in RHOSIM_CONFIGS])
def test_rhosim_configs_name_their_preset(path):
    """Every shipped rhoSIM config sets preset='paper' explicitly, says why in its
    header, and leaves head/dim to the preset."""
    cfg = Config.fromfile(str(path))
    regs = _rhosim_dicts(cfg)
    assert regs
    for reg in regs.values():
        assert reg.get('preset') == 'paper'
        assert 'head' not in reg and 'dim' not in reg
    header = ''.join(line for line in path.read_text().splitlines(True)
                     if line.startswith('#'))
    assert "preset='paper'" in header and "preset='authors_code'" in header


# --------------------------------------------------------------------------- fundus
FUNDUS_EVAL_CONFIGS = (sorted(FUNDUS.glob('*.py'))
                       + sorted((ROOT / 'configs/demo').glob('unet_fcn_small_drive*.py'))
                       + sorted((ROOT / 'configs/_base_/datasets').glob('small_*.py')))


@pytest.mark.parametrize('path', FUNDUS_EVAL_CONFIGS,
                         ids=[p.name for p in FUNDUS_EVAL_CONFIGS])
def test_fundus_configs_log_vessel_dice(path):
    cfg = Config.fromfile(str(path))
    for key in ('val_evaluator', 'test_evaluator'):
        assert cfg[key]['type'] == 'VesselDiceMetric'
        assert list(cfg[key]['iou_metrics']) == ['mDice']
    init_default_scope('mmseg')
    metric = METRICS.build(cfg.val_evaluator)
    assert type(metric).__name__ == 'VesselDiceMetric'


def test_vessel_dice_metric_is_registered_without_shadowing():
    import mmdet.evaluation  # noqa: F401
    import mmpretrain.evaluation  # noqa: F401
    import mmseg.evaluation  # noqa: F401
    from mmdet.registry import METRICS as DET
    from mmpretrain.registry import METRICS as PRE
    from mmseg.registry import METRICS as SEG
    from sslreg.evaluation.vessel_dice import VesselDiceMetric
    assert METRICS.get('VesselDiceMetric') is VesselDiceMetric
    for registry in (SEG, PRE, DET):
        assert 'VesselDiceMetric' not in registry.module_dict
    init_default_scope('mmseg')
    assert SEG.get('VesselDiceMetric') is VesselDiceMetric  # resolves under mmseg's scope


def _toy_samples(seed=0, n=3, size=(17, 23), ignore=255):
    """Hand-made pred / label maps: ~15 % vessel, some pixels ignored."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        label = (rng.random(size) < 0.15).astype(np.int64)
        pred = label.copy()
        flip = rng.random(size) < 0.2  # 20 % of the pixels wrong
        pred[flip] = 1 - pred[flip]
        label[rng.random(size) < 0.05] = ignore
        samples.append((pred, label))
    return samples


def _run(metric, samples):
    metric.dataset_meta = dict(classes=('background', 'vessel'))
    for pred, label in samples:
        metric.process({}, [dict(pred_sem_seg=dict(data=torch.from_numpy(pred)[None]),
                                 gt_sem_seg=dict(data=torch.from_numpy(label)[None]))])
    return metric.evaluate(len(samples))


def test_vessel_dice_equals_direct_numpy_dice_and_mdice_is_unchanged():
    from mmseg.evaluation import IoUMetric
    from sslreg.evaluation.vessel_dice import VesselDiceMetric
    samples = _toy_samples()
    ours = _run(VesselDiceMetric(iou_metrics=['mDice']), samples)
    stock = _run(IoUMetric(iou_metrics=['mDice']), samples)

    pred = np.concatenate([p.ravel() for p, _ in samples])
    label = np.concatenate([g.ravel() for _, g in samples])
    keep = label != 255
    dice = {}
    for c in (0, 1):
        p, g = (pred == c) & keep, (label == c) & keep
        dice[c] = 100 * 2 * (p & g).sum() / (p.sum() + g.sum())
    assert ours['Dice.vessel'] == pytest.approx(dice[1], abs=5e-3)
    # everything the stock metric returns, unchanged; mDice = mean of the two Dice
    assert {k: ours[k] for k in stock} == stock
    assert set(ours) == set(stock) | {'Dice.vessel'}
    assert stock['mDice'] == pytest.approx((dice[0] + dice[1]) / 2, abs=1e-2)
    assert ours['Dice.vessel'] < ours['mDice']  # as on fundus data: background is easy


def test_vessel_dice_other_classes_and_errors():
    from sslreg.evaluation.vessel_dice import VesselDiceMetric
    samples = _toy_samples(seed=1, n=2)
    both = _run(VesselDiceMetric(dice_classes=('background', 'vessel'),
                                 iou_metrics=['mIoU']), samples)
    assert {'Dice.background', 'Dice.vessel', 'mIoU'} <= set(both)
    assert 'mDice' not in both  # only what iou_metrics asks, plus the class Dice
    with pytest.raises(KeyError, match='artery'):
        _run(VesselDiceMetric(dice_classes='artery'), samples)


def test_small_drive_validation_logs_vessel_dice(small_data, tmp_path, monkeypatch):
    """The demo config's real val loop (small DRIVE, slide inference, an untrained
    UNet) returns Dice.vessel beside mDice."""
    import mmengine.config.config as mm_config
    monkeypatch.chdir(ROOT)
    # MMEngine yapf-formats the config it logs (seconds here); the raw text is as valid
    monkeypatch.setattr(mm_config, 'FormatCode', lambda text, **kwargs: (text, False))
    from sslreg.launch import build_runner, load_config, set_work_dir
    path = ROOT / 'configs/demo/unet_fcn_small_drive.py'
    cfg = load_config(str(path))
    set_work_dir(cfg, str(path), str(tmp_path))
    cfg.val_dataloader.dataset.indices = 1
    cfg.model.test_cfg.stride = (64, 64)
    cfg.experiment_name = f'vessel_dice_{tmp_path.name}'
    runner = build_runner(cfg, 'none')
    metrics = runner.val()
    assert 0 <= metrics['Dice.vessel'] <= 100 and 0 <= metrics['mDice'] <= 100

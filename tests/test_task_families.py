"""The three task families of the papers, end to end on the small real datasets.

Each shipped full-scale config (configs/sim/cub, configs/sim/fundus, configs/det) is run
after one honest substitution: its datasets are replaced by the small real ones
(configs/_base_/datasets/small_*.py, digits_*.py: the same frameworks' loaders and
on-disk layouts) and its schedule is shortened. Model, regularizers, optimizer and
evaluation stay the shipped config's. The substitution is written out as a plain config
(``Config.dump``) in the test's tmp dir, so tools/train.py and tools/test.py read the
same file a user could read.

- CUB: the ResNet-50 rhoSIM config on digits_cub upscaled to 64 px (10 classes, so the
  head is resized; no ImageNet-21k weights here, so init_cfg=None): trains, evaluates,
  test.py reproduces top-1 from the checkpoint.
- Fundus: one rhoSIM config per layout (DRIVE, STARE, CHASE_DB1, HRF; all three heads
  among them), 2 iterations each at 64x64 crops, mDice; DRIVE through the CLI tools,
  test.py reproducing its mDice; the other three through the same sslreg.launch steps
  in this process (a process start costs more than their training). The VCReg hook
  variant trains on DRIVE and logs its value.
- Detection: the frozen-ViT-S RetinaNet on digits_coco with a fake "SSL checkpoint" of
  known random weights: bbox mAP (and class-agnostic recall, non-zero after 4
  iterations) reproduced by test.py; the encoder in the trained checkpoint equals the SSL
  checkpoint's weights bit for bit (so they were loaded, and never changed), while neck
  and head did change.
"""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from conftest import ROOT, run_tool

pytestmark = pytest.mark.timeout(900)

# OpenMP threads that spin while waiting make a 2-thread run ~3x slower than 1 thread
# when other jobs share the 2 cores (measured: UNet step 4-7 s vs 1.5 s); passive
# waiting costs nothing when the machine is quiet.
TOOL_ENV = {'OMP_WAIT_POLICY': 'PASSIVE'}

CUB_RHOSIM = 'configs/sim/cub/resnet50_rhosim_8xb8_cub.py'
FUNDUS = 'configs/sim/fundus/unet-s5-d16_{}_rhosim_4xb4-40k_{}.py'
FUNDUS_VCREG = 'configs/sim/fundus/unet-s5-d16_fcn_vcreg_4xb4-40k_drive-64x64.py'
RETINA = 'configs/det/retinanet_vit-s16-frozen_simple-pyramid_8xb4-45k_coco.py'
MASK_RCNN = 'configs/det/mask-rcnn_vit-s16-frozen_simple-pyramid_8xb4-45k_coco.py'
DATA_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator',
             'test_evaluator')


@pytest.fixture(autouse=True)
def no_yapf(monkeypatch):
    """MMEngine formats the whole config with yapf each time it prints or saves it (log,
    dump, every checkpoint): ~6 s a time on this machine for these merged configs. The
    unformatted text is the same valid Python; skip the formatting in this process."""
    import mmengine.config.config as mm_config
    monkeypatch.setattr(mm_config, 'FormatCode', lambda text, **kwargs: (text, False))


def last_metric(log: str, key: str) -> float:
    values = re.findall(re.escape(key) + r':\s*(-?[\d.]+)', log)
    assert values, f'{key} not in the output:\n{log[-3000:]}'
    return float(values[-1])


def strip_pretrained(node):
    """No weight can be downloaded here: drop Pretrained init_cfgs."""
    if isinstance(node, dict):
        if isinstance(node.get('init_cfg'), dict) and node['init_cfg'].get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            strip_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            strip_pretrained(value)


def small_config(shipped: str, dataset_base: str, out: Path, options: dict,
                 keep_pretrained: bool = False, extra_keys=()) -> Path:
    """The shipped config with the small real dataset's loaders/evaluators (and
    ``extra_keys``) swapped in and ``options`` merged, dumped to ``out``."""
    cfg = Config.fromfile(str(ROOT / shipped))
    small = Config.fromfile(str(ROOT / dataset_base))
    for key in DATA_KEYS + tuple(extra_keys):
        if key in small:
            cfg[key] = small[key]
    if not keep_pretrained:
        strip_pretrained(cfg.model)
    cfg.merge_from_dict(options)
    cfg.dump(str(out))
    return out


# --------------------------------------------------------------------------- CUB
# digits-CUB upscaled to 64 px: at 32 px ResNet-50's last stage is a 1x1 map, which rhoSIM
# refuses (standardizing one token trains nothing); at 64 px it is 2x2 and the shipped
# config's layer set, every residual block, runs unchanged.
CUB_64PX = {f'{loader}.dataset.pipeline.{i}.{key}': value
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
            for i, key, value in ((1, 'scale', 72), (2, 'crop_size', 64))}


def test_cub_rhosim_resnet50_small(small_data, tmp_path):
    cfg = small_config(CUB_RHOSIM, 'configs/_base_/datasets/digits_cub.py',
                       tmp_path / 'cub_small.py', {
                           **CUB_64PX,
                           'model.architecture.head.num_classes': 10,
                           'model.probe_input': (1, 3, 64, 64),
                           'train_cfg.max_epochs': 1,
                           # 2 iterations of 8 images: seconds, not minutes
                           'train_dataloader.batch_size': 8,
                           'train_dataloader.dataset.indices': 16,
                           'val_dataloader.dataset.indices': 32,
                           'test_dataloader.dataset.indices': 32,
                           'default_hooks.logger.interval': 1,
                       }, extra_keys=('data_preprocessor',))
    loaded = Config.fromfile(str(cfg))
    assert loaded.train_dataloader.dataset.pipeline[2] == dict(type='RandomCrop', crop_size=64)
    assert loaded.model.regularizers.sim.layers == 'backbone.layer*.*'
    log = run_tool('tools/train.py', cfg, '--work-dir', tmp_path, env=TOOL_ENV)
    assert 'loss_sim' in log  # the regularizer ran and was logged
    acc = last_metric(log, 'accuracy/top1')
    test_log = run_tool('tools/test.py', cfg, tmp_path / 'epoch_1.pth',
                        '--work-dir', tmp_path / 'test', env=TOOL_ENV)
    assert last_metric(test_log, 'accuracy/top1') == pytest.approx(acc, abs=1e-4)
    ckpt = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu')  # safe loading
    heads = {k.split('.')[3] for k in ckpt['state_dict']
             if k.startswith('regularizers.sim.heads.') and '.predictor.' in k}
    assert len(heads) == 16  # a predictor for every bottleneck, layer4 included


# ------------------------------------------------------------------------ fundus
FUNDUS_RUNS = [  # (layout dir, mmseg suffix, head): all four layouts, all three heads
    ('DRIVE', 'drive-64x64', 'fcn'),
    ('STARE', 'stare-128x128', 'pspnet'),
    ('CHASE_DB1', 'chase-db1-128x128', 'deeplabv3'),
    ('HRF', 'hrf-256x256', 'fcn'),
]
FUNDUS_OPTS = {
    'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2,
    'default_hooks.checkpoint.interval': 2, 'default_hooks.logger.interval': 1,
    'train_dataloader.batch_size': 2, 'val_dataloader.dataset.indices': 1,
    'test_dataloader.dataset.indices': 1,
}
# The UNet is ~30 GMAC per 256x256 crop: on 2 CPU cores every layout runs at the small
# bases' 64x64 crops (the shipped STARE/CHASE/HRF configs pad to 128/256), 128 px images.
FUNDUS_SMALL_CROPS = {
    'model.architecture.data_preprocessor.size': (64, 64),
    'model.architecture.test_cfg.crop_size': (64, 64),
    # stride <= crop: mmseg's slide_inference asserts that the windows cover the image
    # (stride 96 leaves rows 64-95 of a 160 px DRIVE image uncovered)
    'model.architecture.test_cfg.stride': (64, 64),
}


def train_in_process(cfg_path: Path, work_dir: Path):
    """tools/train.py's steps (sslreg.launch: config, work dir, the machine fixes, the
    Runner) in this process: saves a process start, tens of seconds on a loaded 2-core
    machine, for runs only checked for training + evaluation. Returns the Runner (its
    message hub holds the logged scalars)."""
    from sslreg.launch import build_runner, default_collate_for_mmpretrain, load_config, \
        set_work_dir
    cfg = load_config(str(cfg_path))
    set_work_dir(cfg, str(cfg_path), str(work_dir))
    default_collate_for_mmpretrain(cfg)
    cfg.experiment_name = f'{cfg_path.stem}_{work_dir.name}'
    runner = build_runner(cfg, 'none')
    runner.train()
    return runner


def scalar(runner, key):
    return runner.message_hub.get_scalar(key).current()


def test_fundus_rhosim_drive_tools(small_data, tmp_path):
    """DRIVE through the CLI tools: train, evaluate, test.py reproduces mDice."""
    cfg = small_config(FUNDUS.format('fcn', 'drive-64x64'),
                       'configs/_base_/datasets/small_drive.py', tmp_path / 'fundus.py',
                       {**FUNDUS_OPTS, **FUNDUS_SMALL_CROPS})
    log = run_tool('tools/train.py', cfg, '--work-dir', tmp_path, env=TOOL_ENV)
    assert 'loss_sim_enc' in log and 'loss_sim_dec' in log
    dice = last_metric(log, 'mDice')
    test_log = run_tool('tools/test.py', cfg, tmp_path / 'iter_2.pth',
                        '--work-dir', tmp_path / 'test', env=TOOL_ENV)
    assert last_metric(test_log, 'mDice') == pytest.approx(dice, abs=1e-2)


@pytest.mark.parametrize('layout,suffix,head', FUNDUS_RUNS[1:],
                         ids=[r[0] for r in FUNDUS_RUNS[1:]])
def test_fundus_rhosim_layouts(small_data, tmp_path, layout, suffix, head):
    """STARE, CHASE_DB1, HRF: each layout's rhoSIM config trains and evaluates."""
    base = f'configs/_base_/datasets/small_{layout.lower()}.py'
    cfg = small_config(FUNDUS.format(head, suffix), base, tmp_path / f'fundus_{layout}.py',
                       {**FUNDUS_OPTS, **FUNDUS_SMALL_CROPS})
    loaded = Config.fromfile(str(cfg))
    assert loaded.train_dataloader.dataset.dataset.data_root == f'data/small/{layout}'
    assert loaded.train_dataloader.dataset.dataset.type == loaded.val_dataloader.dataset.type
    runner = train_in_process(cfg, tmp_path)
    assert type(runner.train_dataloader.dataset.dataset).__name__ == \
        loaded.train_dataloader.dataset.dataset.type
    assert scalar(runner, 'train/loss_sim_enc') > 0 and scalar(runner, 'train/loss_sim_dec') > 0
    assert 0 <= scalar(runner, 'val/mDice') <= 100
    assert (tmp_path / 'iter_2.pth').exists()


def test_fundus_vcreg_hook_drive(small_data, tmp_path):
    """The VCReg hook variant (no change to the model config) on segmentation."""
    cfg = small_config(FUNDUS_VCREG, 'configs/_base_/datasets/small_drive.py',
                       tmp_path / 'fundus_vcreg.py',
                       {**FUNDUS_OPTS, 'model.test_cfg.stride': (64, 64)})
    runner = train_in_process(cfg, tmp_path)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'RegularizerHook')
    assert len(hook.regularizers['vcreg'].layer_names) == 9  # 5 encoder + 4 decoder blocks
    # the fast form logs its value (its gradient is added in backward)
    assert scalar(runner, 'train/vcreg_value') > 0
    assert 0 <= scalar(runner, 'val/mDice') <= 100


# --------------------------------------------------------------------- detection
def fake_ssl_checkpoint(path: Path, seed: int = 0) -> dict:
    """An 'SSL checkpoint' like mmpretrain's: encoder under backbone.*, plus other keys
    (neck/head of the SSL algorithm) that must not be loaded; known random weights."""
    from mmpretrain.models import VisionTransformer
    vit = VisionTransformer(arch=dict(embed_dims=384, num_layers=12, num_heads=6,
                                      feedforward_channels=1536),
                            img_size=224, patch_size=16, out_type='featmap')
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for key, value in vit.state_dict().items():
        noise = torch.randn(value.shape, generator=gen)
        weights[key] = (1 + 0.1 * noise) if key.endswith(('ln1.weight', 'ln2.weight')) \
            else 0.02 * noise
    state = {f'backbone.{k}': v for k, v in weights.items()}
    state['neck.mlp.0.weight'] = torch.randn(8, 384, generator=gen)
    state['head.predictor.weight'] = torch.randn(8, 8, generator=gen)
    torch.save({'meta': {'epoch': 300}, 'state_dict': state}, path)
    return weights


def test_frozen_vit_retinanet_small(small_data, tmp_path):
    ssl_ckpt = tmp_path / 'ssl_vit-s16.pth'
    ssl_weights = fake_ssl_checkpoint(ssl_ckpt)
    cfg = small_config(RETINA, 'configs/_base_/datasets/digits_coco.py',
                       tmp_path / 'retina_small.py', {
                           'model.backbone.backbone.init_cfg.checkpoint': str(ssl_ckpt),
                           'model.bbox_head.num_classes': 10,
                           # digits are 16-48 px on 128 px canvases: 16 px anchors (demo)
                           'model.bbox_head.anchor_generator.octave_base_scale': 2,
                           # a few iterations leave every score under the stock 0.05:
                           # keep the top 100 boxes so the metric is computed
                           'model.test_cfg.score_thr': 0.0,
                           # 4 iterations on a random 'SSL' encoder: mAP is ~0; the
                           # class-agnostic recall of the same boxes is a non-zero number
                           # that test.py must reproduce too
                           'val_evaluator.metric': ['bbox', 'proposal'],
                           'test_evaluator.metric': ['bbox', 'proposal'],
                           'train_cfg.max_iters': 4, 'train_cfg.val_interval': 4,
                           'train_dataloader.batch_size': 2,
                           'train_dataloader.dataset.indices': 8,
                           'val_dataloader.dataset.indices': 8,
                           'test_dataloader.dataset.indices': 8,
                           'param_scheduler': [dict(type='ConstantLR', factor=1.0,
                                                    by_epoch=False)],
                           'optim_wrapper.optimizer.lr': 1e-3,
                           'default_hooks.checkpoint.interval': 2,
                           'default_hooks.logger.interval': 1,
                       }, keep_pretrained=True)
    log = run_tool('tools/train.py', cfg, '--work-dir', tmp_path, env=TOOL_ENV)
    assert str(ssl_ckpt) in log  # MMEngine logs the checkpoint it loads
    mAP = last_metric(log, 'coco/bbox_mAP')
    test_log = run_tool('tools/test.py', cfg, tmp_path / 'iter_4.pth',
                        '--work-dir', tmp_path / 'test', env=TOOL_ENV)
    assert last_metric(test_log, 'coco/bbox_mAP') == pytest.approx(mAP, abs=1e-4)
    recall = last_metric(log, 'coco/AR@100')
    assert recall > 0
    assert last_metric(test_log, 'coco/AR@100') == pytest.approx(recall, abs=1e-4)

    # Checkpoints load under torch's safe loading (no weights_only=False).
    early = torch.load(tmp_path / 'iter_2.pth', map_location='cpu')['state_dict']
    final = torch.load(tmp_path / 'iter_4.pth', map_location='cpu')['state_dict']
    encoder = {k[len('backbone.'):]: v for k, v in final.items() if k.startswith('backbone.')}
    # (b) the SSL checkpoint was really loaded (random init would never match), and
    # (a) the encoder is bit-identical after training, every tensor of it.
    # TransferViT also holds SER's ln_equiv, unused when it runs a plain ViT checkpoint
    assert set(encoder) - set(ssl_weights) <= {'ln_equiv.weight', 'ln_equiv.bias'}
    assert set(ssl_weights) <= set(encoder)
    encoder = {k: v for k, v in encoder.items() if k in ssl_weights}
    changed = [k for k in encoder if not torch.equal(encoder[k], ssl_weights[k])]
    assert not changed, f'encoder tensors differ from the SSL checkpoint: {changed[:5]}'
    # ... while the neck and the head did train between iteration 2 and 4.
    for prefix in ('neck.', 'bbox_head.'):
        keys = [k for k in final if k.startswith(prefix)]
        assert keys and any(not torch.equal(early[k], final[k]) for k in keys), prefix


# ---------------------------------------------------------------- unit-level
def test_frozen_backbone_stays_frozen_and_in_eval():
    import copy
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmdet')
    cfg = copy.deepcopy(Config.fromfile(str(ROOT / RETINA)).model)
    cfg.backbone.backbone.init_cfg = None
    cfg.backbone.backbone.drop_path_rate = 0.1  # eval mode must switch it off
    cfg.backbone.backbone.arch.num_layers = 2   # speed
    cfg.backbone.backbone.cls_insert_layer = 1  # SER's k must be a block of this ViT
    detector = MODELS.build(cfg)
    detector.train()
    backbone = detector.backbone
    from mmpretrain.models import VisionTransformer
    # TransferViT, an mmpretrain ViT that also runs SER checkpoints as trained
    assert type(backbone).__name__ == 'TransferViT' and isinstance(backbone, VisionTransformer)
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not any(m.training for m in backbone.modules())
    assert detector.neck.training and detector.bbox_head.training
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        a, b = backbone(x)[0], backbone(x)[0]
    assert torch.equal(a, b)  # deterministic: drop-path off while the detector trains
    clone = copy.deepcopy(detector)  # EMAHook deep-copies the model
    clone.train()
    assert not clone.backbone.training
    assert not any(p.requires_grad for p in clone.backbone.parameters())


@pytest.mark.parametrize('path', [RETINA, MASK_RCNN], ids=['retinanet', 'mask-rcnn'])
def test_detector_levels_match_heads(path):
    """The neck's levels are the strides the shipped detectors' heads expect."""
    import copy
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmdet')
    cfg = copy.deepcopy(Config.fromfile(str(ROOT / path)).model)  # ConfigDict, as Runner
    cfg.backbone.backbone.init_cfg = None
    detector = MODELS.build(cfg)
    head = detector.bbox_head if hasattr(detector, 'bbox_head') else detector.rpn_head
    strides = [s[0] for s in head.prior_generator.strides]
    feats = detector.extract_feat(torch.randn(1, 3, 256, 256))
    assert [256 // f.shape[-1] for f in feats] == strides
    if hasattr(detector, 'roi_head'):
        roi = detector.roi_head.bbox_roi_extractor.featmap_strides
        assert [256 // f.shape[-1] for f in feats[:len(roi)]] == list(roi)


@pytest.mark.parametrize('scales,num_outs,strides', [
    ((4.0, 2.0, 1.0, 0.5), 5, (4, 8, 16, 32, 64)),   # Mask R-CNN
    ((2.0, 1.0, 0.5), 5, (8, 16, 32, 64, 128)),      # RetinaNet
    ((1.0, ), None, (16, )),
])
def test_simple_pyramid_neck_levels(scales, num_outs, strides):
    from sslreg.models import SimplePyramidNeck
    neck = SimplePyramidNeck(in_channels=[32], out_channels=16, scale_factors=scales,
                             num_outs=num_outs, norm_cfg=dict(type='GN', num_groups=4))
    neck.init_weights()
    x = torch.randn(2, 32, 16, 16)  # a stride-16 map of a 256 px image
    outs = neck((x, ))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 256 // s, 256 // s) for s in strides]
    sum(o.mean() for o in outs).backward()


def test_simple_pyramid_neck_rejects_multi_level_input():
    from sslreg.models import SimplePyramidNeck
    with pytest.raises(ValueError, match='ONE map'):
        SimplePyramidNeck(in_channels=[256, 512], out_channels=256)
    with pytest.raises(ValueError, match='scale_factors'):
        SimplePyramidNeck(in_channels=384, scale_factors=(8.0, ))

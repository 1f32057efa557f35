"""SER checkpoints into frozen-backbone detection (issue #12).

* configs/det/*vit-s16* build (mmdet scope) and load a ViT-S/16 SER checkpoint of each
  SER algorithm -- the algorithm built from its config with random weights, saved in
  MMEngine's format -- and a standard mmpretrain ViT-S/16 checkpoint; the detector's
  backbone features equal those of the pre-trained encoder itself (LateClsViT for SER,
  VisionTransformer for the standard one) bit for bit, at an input size other than the
  pre-training one (positions interpolated per image).
* End to end on digits: SER MoCo v3 pre-trains a few iterations, the digits RetinaNet
  trains a few iterations on it, and the frozen encoder in the detector checkpoint is
  the SSL checkpoint's online encoder, bit for bit; a standard ViT checkpoint goes
  through the same detection path.
Checkpoints are read with torch's safe loading (weights_only=True).
"""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner.checkpoint import save_checkpoint
from mmpretrain.models import VisionTransformer

from test_ser_train import _ssl_options, _train  # noqa: E402  (tests/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
DET_S16 = {
    'retinanet': 'configs/det/retinanet_vit-s16-frozen_simple-pyramid_8xb4-45k_coco.py',
    'mask-rcnn': 'configs/det/mask-rcnn_vit-s16-frozen_simple-pyramid_8xb4-45k_coco.py',
}
SER_S16 = {
    'mocov3': 'configs/ser/ser-mocov3_vit-small-p16_8xb256-coslr-100e_in1k.py',
    'dino': 'configs/ser/ser-dino_vit-small-p16_8xb256-coslr-100e_in1k.py',
    'barlowtwins': 'configs/ser/ser-barlowtwins_vit-small-p16_8xb256-coslr-100e_in1k.py',
}
SER_DIGITS = 'configs/ser/ser-mocov3_vit-tiny-p8_digits.py'
DET_DIGITS = 'configs/ser/retinanet_ser-vit-tiny-p8-frozen_simple-pyramid_digits-coco.py'
# an input size the encoders were not pre-trained at (224 / 32): positions are resized
S16_INPUT, DIGITS_INPUT = (2, 3, 160, 240), (2, 3, 96, 128)
# the momentum / teacher copy of the online / student encoder in each algorithm
EMA_PREFIX = {'mocov3': 'momentum_encoder.module.0.', 'dino': 'teacher.module.0.'}


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


def _load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def _noise(module, generator):
    """Random weights everywhere (LayerNorms, positions and CLS token included), so
    that equal features mean equal functions, not equal initialisations."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)


def _build_det(config, checkpoint, prefix='backbone.', **backbone):
    cfg = Config.fromfile(str(ROOT / config))
    enc = cfg.model.backbone.backbone
    enc.init_cfg.checkpoint, enc.init_cfg.prefix = str(checkpoint), prefix
    for key, value in backbone.items():
        if key == 'num_heads':
            enc.arch.num_heads = value
        else:
            enc[key] = value
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(copy.deepcopy(cfg.model))


def _encoder(state, prefix='backbone.'):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _assert_same_weights(module, expected):
    state = module.state_dict()
    assert expected and set(expected) <= set(state)
    bad = [k for k, v in expected.items() if not torch.equal(state[k], v)]
    assert not bad, bad


def _features(backbone, x):
    backbone.eval()
    with torch.no_grad():
        return backbone(x)


@pytest.fixture(scope='module')
def ser_s16(tmp_path_factory):
    """name -> (path, SER model): SER ViT-S/16 checkpoints with random weights (and a
    momentum / teacher copy that differs from the online encoder), saved as MMEngine
    does, the training config recorded in meta['cfg']."""
    made, out = {}, tmp_path_factory.mktemp('ser_s16')

    def make(name):
        if name not in made:
            cfg = Config.fromfile(str(ROOT / SER_S16[name]))
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                model = MODELS.build(copy.deepcopy(cfg.model))
            gen = torch.Generator().manual_seed(len(name))
            _noise(model, gen)
            path = out / f'{name}.pth'
            save_checkpoint({'state_dict': model.state_dict(),
                             'meta': {'cfg': cfg.pretty_text, 'epoch': 100}}, str(path))
            made[name] = path, model
        return made[name]
    return make


@pytest.mark.parametrize('det,ser', [('retinanet', 'mocov3'), ('retinanet', 'dino'),
                                     ('retinanet', 'barlowtwins'), ('mask-rcnn', 'mocov3')])
def test_vit_s16_det_configs_take_ser_checkpoints(det, ser, ser_s16):
    path, ssl = ser_s16(ser)
    heads = ssl.backbone.arch_settings['num_heads']  # 12 for MoCo v3's ViT-S, else 6
    model = _build_det(DET_S16[det], path, num_heads=heads)
    model.init_weights()
    enc = model.backbone
    assert type(enc).__name__ == 'TransferViT' and enc.loaded_from == 'ser'
    assert not enc.cls_at_input and enc.cls_insert_layer == ssl.backbone.cls_insert_layer == 3
    state = _load(path)['state_dict']
    _assert_same_weights(enc, _encoder(state))  # the online / student encoder ...
    if ser in EMA_PREFIX:                        # ... not its momentum / teacher copy
        ema = _encoder(state, EMA_PREFIX[ser])
        assert not torch.equal(enc.state_dict()['layers.0.attn.qkv.weight'],
                               ema['layers.0.attn.qkv.weight'])
    # frozen: no gradient, eval mode whatever train() says
    model.train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    # the same function as the SER encoder itself (its patch tokens), at 160x240
    ref = copy.deepcopy(ssl.backbone)
    ref.out_type = 'featmap'
    x = torch.randn(*S16_INPUT, generator=torch.Generator().manual_seed(1))
    got, want = _features(enc, x), _features(ref, x)
    assert got[0].shape == (2, 384, 10, 15)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    # a detector checkpoint (load_from) reproduces it
    again = _build_det(DET_S16[det], path, num_heads=heads).backbone
    again.load_state_dict(enc.state_dict())
    assert torch.equal(_features(again, x)[0], got[0])


@pytest.mark.parametrize('det', sorted(DET_S16))
def test_vit_s16_det_configs_take_standard_vit_checkpoints(det, tmp_path):
    """An mmpretrain VisionTransformer (CLS position in pos_embed) runs as itself."""
    vit = VisionTransformer(arch='deit-small', img_size=224, patch_size=16,
                            out_type='featmap')
    _noise(vit, torch.Generator().manual_seed(2))
    assert vit.pos_embed.shape == (1, 197, 384)
    path = tmp_path / 'vit.pth'
    save_checkpoint({'state_dict': {'backbone.' + k: v for k, v in vit.state_dict().items()},
                     'meta': {}}, str(path))
    model = _build_det(DET_S16[det], path)
    model.init_weights()
    enc = model.backbone
    assert enc.loaded_from == 'vit' and enc.cls_at_input
    _assert_same_weights(enc, _encoder(_load(path)['state_dict']))
    x = torch.randn(*S16_INPUT, generator=torch.Generator().manual_seed(3))
    got = _features(enc, x)[0]
    assert torch.equal(got, _features(vit, x)[0])
    again = _build_det(DET_S16[det], path).backbone
    again.load_state_dict(enc.state_dict())
    assert torch.equal(_features(again, x)[0], got)


def test_recorded_training_config_is_checked(ser_s16, tmp_path):
    path, ssl = ser_s16('mocov3')  # 12 heads, CLS after block 3
    det = DET_S16['retinanet']
    with pytest.raises(ValueError, match='arch.num_heads=12'):
        _build_det(det, path).init_weights()  # the config's default: 6 heads
    with pytest.raises(ValueError, match='cls_insert_layer=3'):
        _build_det(det, path, num_heads=12, cls_insert_layer=2).init_weights()
    with pytest.raises(ValueError, match='no weight under prefix'):
        _build_det(det, path, prefix='encoder.', num_heads=12).init_weights()
    # the momentum encoder instead of the online one, on request
    model = _build_det(det, path, prefix=EMA_PREFIX['mocov3'], num_heads=12)
    model.init_weights()
    _assert_same_weights(model.backbone, _encoder(_load(path)['state_dict'],
                                                  EMA_PREFIX['mocov3']))
    # without a recorded config the configured values are used; a missing weight fails
    state = {k: v for k, v in _load(path)['state_dict'].items()
             if k != 'backbone.layers.5.ln1.weight'}
    save_checkpoint({'state_dict': state, 'meta': {}}, str(tmp_path / 'partial.pth'))
    with pytest.raises(ValueError, match='layers.5.ln1.weight'):
        _build_det(det, tmp_path / 'partial.pth', num_heads=12).init_weights()


def test_ser_digits_pretraining_into_frozen_detection(small_data, tmp_path):
    no_val = {'val_cfg': None, 'val_dataloader': None, 'val_evaluator': None}
    ssl_runner, _ = _train(SER_DIGITS, tmp_path / 'ssl', {**_ssl_options(), **no_val})
    ssl_ckpt = tmp_path / 'ssl' / 'epoch_1.pth'
    ssl_state = _load(ssl_ckpt)['state_dict']
    online, momentum = _encoder(ssl_state), _encoder(ssl_state, EMA_PREFIX['mocov3'])
    assert any(not torch.equal(v, momentum[k]) for k, v in online.items())

    # a standard ViT of the same shape (CLS position in pos_embed), random weights
    vit = VisionTransformer(arch=dict(embed_dims=96, num_layers=4, num_heads=3,
                                      feedforward_channels=192),
                            img_size=32, patch_size=8, out_type='featmap')
    _noise(vit, torch.Generator().manual_seed(4))
    vit_ckpt = tmp_path / 'vit.pth'
    save_checkpoint({'state_dict': {'backbone.' + k: v for k, v in vit.state_dict().items()},
                     'meta': {}}, str(vit_ckpt))

    ref_ser = copy.deepcopy(ssl_runner.model.backbone)
    ref_ser.out_type = 'featmap'
    x = torch.randn(*DIGITS_INPUT, generator=torch.Generator().manual_seed(5))
    for kind, ckpt, ref in (('ser', ssl_ckpt, ref_ser), ('vit', vit_ckpt, vit)):
        work = tmp_path / f'det_{kind}'
        options = {'model.backbone.backbone.init_cfg.checkpoint': str(ckpt),
                   'train_cfg.max_iters': 3, 'train_cfg.val_interval': 1000,
                   'default_hooks.checkpoint.interval': 3, 'default_hooks.logger.interval': 1,
                   'train_dataloader.batch_size': 4, **no_val}
        runner, snap = _train(DET_DIGITS, work, options)
        assert len(snap.losses) == 3
        enc = runner.model.backbone
        assert enc.loaded_from == kind
        det_state = _load(work / 'iter_3.pth')['state_dict']
        expected = online if kind == 'ser' else vit.state_dict()
        # the frozen encoder after detection training: the pre-trained one, bit for bit
        det_enc = _encoder(det_state)
        assert set(expected) <= set(det_enc), set(expected) - set(det_enc)
        bad = [k for k, v in expected.items() if not torch.equal(det_enc[k], v)]
        assert not bad, bad
        for part in ('neck.', 'bbox_head.'):  # what trains in this protocol trained
            assert any(not torch.equal(v, snap.before[k]) for k, v in det_state.items()
                       if k.startswith(part)), part
        # and it computes what the pre-trained encoder computes (at 96x128, not 32x32)
        got, want = _features(enc, x), _features(ref, x)
        assert got[0].shape == (2, 96, 12, 16)
        assert all(torch.equal(a, b) for a, b in zip(got, want))

"""Each SER algorithm trains a few iterations on the digits data through MMEngine's Runner
(the shipped small configs, validation with the equivariance metric), and an SER
checkpoint goes into the frozen-backbone detection config, end to end on digits-COCO."""
import math
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook

from sslreg.launch import (build_runner, default_collate_for_mmpretrain, load_config,
                           set_work_dir)

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
SSL_CONFIGS = {
    'SERMoCoV3': 'configs/ser/ser-mocov3_vit-tiny-p8_digits.py',
    'SERBarlowTwins': 'configs/ser/ser-barlowtwins_vit-tiny-p8_digits.py',
    'SERDINO': 'configs/ser/ser-dino_vit-tiny-p8_digits.py',
}
DET_CONFIG = 'configs/ser/retinanet_ser-vit-tiny-p8-frozen_simple-pyramid_digits-coco.py'


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


class _Snapshot(Hook):
    """Model weights when training starts (after init_weights) and the training losses
    of every iteration."""

    def __init__(self):
        self.before, self.losses = None, []

    def before_train(self, runner):
        self.before = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append({k: float(v.detach()) for k, v in (outputs or {}).items()})


def _train(config, work_dir, options):
    cfg = load_config(str(ROOT / config), options)
    set_work_dir(cfg, config, str(work_dir))
    default_collate_for_mmpretrain(cfg)
    runner = build_runner(cfg, 'none')
    snap = _Snapshot()
    runner.register_hook(snap, priority='LOWEST')
    runner.train()
    return runner, snap


def _ssl_options(n_train=32):
    return {'train_cfg.max_epochs': 1, 'train_dataloader.batch_size': 16,
            'train_dataloader.dataset.indices': n_train,
            'val_dataloader.dataset.indices': 16, 'default_hooks.logger.interval': 1}


@pytest.fixture(scope='module')
def moco_run(small_data, tmp_path_factory, request):
    work_dir = tmp_path_factory.mktemp('ser_moco')
    runner, snap = _train(SSL_CONFIGS['SERMoCoV3'], work_dir, _ssl_options())
    return runner, snap, work_dir


def _check_ssl_run(runner, snap, work_dir):
    assert len(snap.losses) == 2  # 32 images, batch 16
    for losses in snap.losses:
        assert {'loss_inv', 'loss_equiv', 'equiv_nce'} <= set(losses)
        assert all(math.isfinite(v) for v in losses.values())
    after = runner.model.backbone.state_dict()
    k = runner.model.backbone.cls_insert_layer
    for i in range(k):  # blocks the equivariance loss trains changed
        key = f'layers.{i}.attn.qkv.weight'
        assert not torch.equal(snap.before['backbone.' + key], after[key]), key
    val = runner.message_hub.log_scalars
    for loc in ('final', 'layer_k'):  # the paper's location and SER's layer
        for name in ('rotation', 'flip', 'scale', 'group', 'mean'):
            score = val[f'val/equivariance/{loc}/{name}'].current()
            assert -1.0 <= score <= 1.0
    assert (Path(work_dir) / 'epoch_1.pth').exists()


def test_ser_mocov3_trains_on_digits(moco_run):
    _check_ssl_run(*moco_run)


@pytest.mark.parametrize('name', ['SERBarlowTwins', 'SERDINO'])
def test_ser_algorithm_trains_on_digits(name, small_data, tmp_path):
    runner, snap = _train(SSL_CONFIGS[name], tmp_path, _ssl_options())
    _check_ssl_run(runner, snap, tmp_path)


def test_ser_checkpoint_into_frozen_backbone_detection(moco_run, tmp_path):
    _, _, ssl_dir = moco_run
    ckpt = Path(ssl_dir) / 'epoch_1.pth'
    options = {'model.backbone.backbone.init_cfg.checkpoint': str(ckpt),
               'train_cfg.max_iters': 4, 'train_cfg.val_interval': 4,
               'default_hooks.checkpoint.interval': 4, 'default_hooks.logger.interval': 1,
               'train_dataloader.batch_size': 4, 'val_dataloader.dataset.indices': 8,
               'model.test_cfg.score_thr': 0.0}  # 4 iterations: keep low-score boxes
    runner, snap = _train(DET_CONFIG, tmp_path, options)
    assert 0 <= runner.message_hub.log_scalars['val/coco/bbox_mAP'].current() <= 1
    assert len(snap.losses) == 4
    ssl = torch.load(ckpt, map_location='cpu')['state_dict']
    # torch's safe loading: sslreg allow-lists the few globals MMEngine writes
    det = torch.load(Path(tmp_path) / 'iter_4.pth', map_location='cpu')['state_dict']
    enc = {k: v for k, v in det.items() if k.startswith('backbone.')}
    assert enc and all(torch.equal(v, ssl[k]) for k, v in enc.items())  # loaded, frozen
    for part in ('neck.', 'bbox_head.'):  # what trains in this protocol did train
        assert any(not torch.equal(v, snap.before[k]) for k, v in det.items()
                   if k.startswith(part)), part


def test_equivariance_score_from_the_command_line(moco_run, small_data, capsys):
    from sslreg.evaluation.equivariance import main
    _, _, ssl_dir = moco_run
    scores = main([str(ROOT / SSL_CONFIGS['SERMoCoV3']), str(Path(ssl_dir) / 'epoch_1.pth'),
                   '--data-root', str(small_data / 'digits_imagenet' / 'val'), '--size', '32',
                   '--num-images', '16'])
    assert set(scores) == {f'{loc}/{t}' for loc in ('final', 'layer_k')
                           for t in ('rotation', 'flip', 'scale', 'group', 'mean')}
    assert all(-1 <= v <= 1 for v in scores.values())
    assert 'equivariance/final/rotation' in capsys.readouterr().out

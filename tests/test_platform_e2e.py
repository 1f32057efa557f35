"""The platform end to end, through the real CLI tools on the small real datasets:
train with evaluation, test.py reproducing the metric from the checkpoint, --resume,
and a 2-process CPU run with torchrun."""
import json
import re
from pathlib import Path

import pytest

from conftest import free_port, run_tool

pytestmark = pytest.mark.timeout(900)

CUB = 'configs/demo/resnet18_digits_cub_baseline.py'
DRIVE = 'configs/demo/unet_fcn_small_drive.py'
RETINA = 'configs/demo/retinanet_r18_fpn_digits_coco.py'


def last_metric(log: str, key: str) -> float:
    values = re.findall(re.escape(key) + r':\s*(-?[\d.]+)', log)
    assert values, f'{key} not in the output:\n{log[-3000:]}'
    return float(values[-1])


def scalars(work_dir: Path):
    """Every record of MMEngine's scalars.json in the work dir."""
    files = sorted(work_dir.glob('*/vis_data/scalars.json'))
    assert files, f'no scalars.json under {work_dir}'
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_classifier_train_test_resume(small_data, tmp_path):
    opts = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=96',
            'val_dataloader.dataset.indices=64', 'test_dataloader.dataset.indices=64']
    log = run_tool('tools/train.py', CUB, '--work-dir', tmp_path, *opts)
    acc = last_metric(log, 'accuracy/top1')
    ckpt = tmp_path / 'epoch_1.pth'
    assert ckpt.exists()
    test_log = run_tool('tools/test.py', CUB, ckpt, '--work-dir', tmp_path / 'test',
                        '--out', tmp_path / 'preds.pkl', *opts)
    assert last_metric(test_log, 'accuracy/top1') == pytest.approx(acc, abs=1e-4)
    assert (tmp_path / 'preds.pkl').stat().st_size > 0
    # --resume (auto: the latest checkpoint of the work dir) continues to epoch 2
    opts[1] = 'train_cfg.max_epochs=2'
    log = run_tool('tools/train.py', CUB, '--work-dir', tmp_path, '--resume', *opts)
    assert 'resumed epoch: 1' in log.lower() or 'resumed' in log.lower()
    assert 'Epoch(train) [1]' not in log and 'Epoch(train) [2]' in log
    assert (tmp_path / 'epoch_2.pth').exists()


def test_segmentor_train_test(small_data, tmp_path):
    opts = ['--cfg-options', 'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
            'default_hooks.checkpoint.interval=4', 'val_dataloader.dataset.indices=2',
            'test_dataloader.dataset.indices=2']
    log = run_tool('tools/train.py', DRIVE, '--work-dir', tmp_path, *opts)
    dice = last_metric(log, 'mDice')
    ckpt = tmp_path / 'iter_4.pth'
    test_log = run_tool('tools/test.py', DRIVE, ckpt, '--work-dir', tmp_path / 'test', *opts)
    assert last_metric(test_log, 'mDice') == pytest.approx(dice, abs=1e-2)


def test_detector_train_test(small_data, tmp_path):
    opts = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=16',
            'val_dataloader.dataset.indices=8', 'test_dataloader.dataset.indices=8',
            # two iterations leave every score under the stock 0.05: keep them all
            'model.test_cfg.score_thr=0.0']
    log = run_tool('tools/train.py', RETINA, '--work-dir', tmp_path, *opts)
    mAP = last_metric(log, 'coco/bbox_mAP')
    test_log = run_tool('tools/test.py', RETINA, tmp_path / 'epoch_1.pth', '--work-dir',
                        tmp_path / 'test', *opts)
    assert last_metric(test_log, 'coco/bbox_mAP') == pytest.approx(mAP, abs=1e-4)


def test_two_cpu_processes_with_torchrun(small_data, tmp_path):
    opts = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=64',
            'val_dataloader.dataset.indices=32', 'train_dataloader.batch_size=16']
    log = run_tool('tools/dist_train.sh', CUB, 2, '--work-dir', tmp_path, *opts,
                   env={'PORT': '29517'})
    assert 'world_size: 2' in log.replace('\n', ' ') or 'Distributed training: True' in log
    assert (tmp_path / 'epoch_1.pth').exists()
    # logs come from rank 0 only: each training line once
    train_lines = [ln for ln in log.splitlines() if 'Epoch(train)' in ln]
    assert train_lines and len(train_lines) == len(set(train_lines))
    # 64 images, 2 ranks x batch 16: 2 iterations per epoch on each rank
    assert 'Epoch(train) [1][2/2]' in log


# One 2-rank torchrun run per framework besides mmpretrain classification (above), each
# with rhoSIM + VCReg attached, so the regularizers' path under DDP runs end to end:
# (config, cfg-options, the training line a 2-rank run logs last (a 1-rank run logs
# twice the iterations per epoch), regularizer keys, checkpoint, its meta iter).
TORCHRUN_CASES = {
    'mmseg': ('configs/demo/unet_fcn_small_drive_rhosim_vcreg.py',
              ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
               'default_hooks.checkpoint.interval=2', 'val_dataloader.dataset.indices=2'],
              'Iter(train) [2/2]', ('loss_sim_enc', 'loss_sim_dec', 'vcreg_value'),
              'iter_2.pth', 2),
    # 16 images, batch 8 per rank: one iteration on each of 2 ranks
    'mmdet': ('configs/demo/retinanet_r18_fpn_digits_coco_rhosim_vcreg.py',
              ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=16',
               'val_dataloader.dataset.indices=4'],
              'Epoch(train) [1][1/1]', ('loss_sim', 'vcreg_value'), 'epoch_1.pth', 1),
    # SimSiam's NonLinearNeck defaults to SyncBN, which torch DDP refuses on CPU
    # (CPUDistributedDataParallel reverts it): 64 images, batch 32 per rank
    'mmpretrain-ssl': ('configs/demo/simsiam_r18_digits_rhosim_vcreg.py',
                       ['train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=64'],
                       'Epoch(train) [1][1/1]', ('loss_sim', 'vcreg_value'), 'epoch_1.pth', 1),
}


@pytest.mark.parametrize('framework', list(TORCHRUN_CASES))
def test_two_cpu_processes_with_torchrun_per_framework(framework, small_data, tmp_path):
    import torch
    config, opts, last_line, reg_keys, ckpt_name, ckpt_iter = TORCHRUN_CASES[framework]
    log = run_tool('tools/dist_train.sh', config, 2, '--work-dir', tmp_path, '--cfg-options',
                   *opts, 'default_hooks.logger.interval=1',
                   env={'PORT': str(free_port()), 'OMP_NUM_THREADS': '1',
                        'OMP_WAIT_POLICY': 'PASSIVE'})
    # rank 0's log file only (rank 1 writes none), and it says world size 2
    logs = sorted(tmp_path.glob('*/*.log'))
    assert len(logs) == 1, logs
    rank0 = logs[0].read_text()
    assert 'Distributed launcher: pytorch' in rank0 and 'GPU number: 2' in rank0
    assert last_line in rank0
    # logs come from rank 0 only: each training line once, with the regularizers' values
    train_lines = [ln for ln in log.splitlines() if '(train)' in ln and 'loss' in ln]
    assert train_lines and len(train_lines) == len(set(train_lines)), train_lines
    assert all(key in ln for ln in train_lines for key in reg_keys), train_lines
    assert sum(last_line in ln for ln in train_lines) == 1
    ckpt = torch.load(tmp_path / ckpt_name, map_location='cpu')  # safe loading
    assert ckpt['meta']['iter'] == ckpt_iter
    assert any(k.startswith('regularizers.') for k in ckpt['state_dict'])

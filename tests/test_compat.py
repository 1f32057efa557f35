"""sslreg.compat: MMEngine checkpoints under torch's default safe loading; CPU fixes."""
import pickle
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from conftest import run_tool
from sslreg import compat


class Line(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.lin(inputs).squeeze(-1)
        return dict(loss=(out - labels).square().mean()) if mode == 'loss' else out


class Points(Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(2, generator=g), labels=torch.tensor(float(i % 2)))


def _runner(work_dir, **kw):
    return Runner(
        model=Line(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=Points(), sampler=dict(type='DefaultSampler'),
                              batch_size=4, collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=True, max_epochs=kw.pop('max_epochs', 1)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.5, by_epoch=False, end=2)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        default_scope='mmengine', **kw)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    work = tmp_path_factory.mktemp('ckpt')
    _runner(work, experiment_name='write').train()
    return work / 'epoch_1.pth'


def test_runner_checkpoint_loads_with_default_safe_loading(checkpoint):
    # The default of torch.load is weights_only=True on this torch; nothing is switched off.
    ckpt = torch.load(checkpoint)
    hub = ckpt['message_hub']['log_scalars']
    assert 'train/loss' in hub and len(hub['train/loss'].data[0]) > 0
    assert set(ckpt) >= {'meta', 'state_dict', 'optimizer', 'param_schedulers'}


def test_resume_and_load_from_go_through_safe_loading(checkpoint, tmp_path):
    runner = _runner(tmp_path, max_epochs=2, resume=True, load_from=str(checkpoint),
                     experiment_name='resume')
    runner.train()
    assert runner.epoch == 2 and (tmp_path / 'epoch_2.pth').exists()
    weights = torch.load(checkpoint)['state_dict']
    fresh = _runner(tmp_path / 'b', load_from=str(checkpoint), experiment_name='load')
    fresh.load_or_resume()
    assert torch.equal(fresh.model.lin.weight, weights['lin.weight'])


def test_arbitrary_getattr_is_still_refused(tmp_path):
    from collections import OrderedDict

    from mmengine.logging.history_buffer import HistoryBuffer

    class Evil:  # getattr on objects safe loading allows, for names HistoryBuffer never uses
        def __init__(self, obj, name):
            self.obj, self.name = obj, name

        def __reduce__(self):
            return (getattr, (self.obj, self.name))
    for obj, name in ((OrderedDict, 'fromkeys'), (HistoryBuffer, '__init__')):
        path = tmp_path / 'evil.pth'
        torch.save({'x': Evil(obj, name)}, path)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path)


def test_config_fixes_for_cpu():
    cfg = Config(dict(
        train_dataloader=dict(num_workers=0, persistent_workers=True,
                              collate_fn=dict(type='default_collate', _scope_='mmpretrain')),
        model=dict(backbone=dict(norm_cfg=dict(type='SyncBN')),
                   heads=[dict(norm_cfg=dict(type='MMSyncBN', requires_grad=True))]),
        env_cfg=dict(dist_cfg=dict(backend='nccl')), launcher='pytorch'))
    compat.fix_config_for_this_machine(cfg)
    assert cfg.train_dataloader.persistent_workers is False
    assert '_scope_' not in cfg.train_dataloader.collate_fn
    if not torch.cuda.is_available():
        # torch's SyncBN is reverted after the build (any dimensionality); mmcv's cannot
        # be built without a process group
        assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
        assert cfg.model.heads[0].norm_cfg.type == 'SyncBN'
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.type == 'CPUDistributedDataParallel'


def test_cpu_ddp_wrapper_turns_unnamed_syncbn_into_bn(tmp_path):
    """torch's DDP refuses SyncBatchNorm in a CPU module; mmpretrain's NonLinearNeck
    builds SyncBN by default, where no config names it. One gloo process, in a
    subprocess so that this test process never joins a process group."""
    script = tmp_path / 'ddp_syncbn.py'
    script.write_text(textwrap.dedent('''
        import os, torch, torch.distributed as dist
        from mmengine.registry import MODELS, init_default_scope
        import sslreg
        from sslreg.models.ddp import CPUDistributedDataParallel
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=os.environ['PORT'])
        dist.init_process_group('gloo', rank=0, world_size=1)
        init_default_scope('mmpretrain')
        neck = MODELS.build(dict(type='NonLinearNeck', in_channels=4, hid_channels=6,
                                 out_channels=3, with_avg_pool=False))
        assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in neck.modules())
        ddp = CPUDistributedDataParallel(neck.train())
        assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in ddp.modules())
        out = ddp((torch.randn(5, 4),))[0]
        out.sum().backward()
        assert out.shape == (5, 3) and neck.fc0.weight.grad is not None
        print('SYNCBN-REVERTED')
    '''))
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    assert 'SYNCBN-REVERTED' in run_tool(script, env=dict(PORT=str(port)), timeout=300)


def test_scheduler_that_begins_where_training_ends_is_dropped():
    """The demos' cosine begins after a 1-epoch warmup and ends with training: in a
    1-epoch run MMEngine would give it end=1=begin and raise; it is dropped instead."""
    warmup = dict(type='LinearLR', by_epoch=True, begin=0, end=1)
    cosine = dict(type='CosineAnnealingLR', by_epoch=True, begin=1)
    cfg = Config(dict(train_cfg=dict(max_epochs=1), param_scheduler=[warmup, cosine]))
    with pytest.warns(UserWarning, match='CosineAnnealingLR begins at 1'):
        compat.fix_config_for_this_machine(cfg)
    assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR']
    # a longer run keeps it; so does a phase with an explicit end (MMEngine accepts it)
    for train_cfg, sched in ((dict(max_epochs=2), cosine), (dict(max_epochs=1), dict(cosine, end=8))):
        cfg = Config(dict(train_cfg=train_cfg, param_scheduler=[warmup, sched]))
        compat.fix_config_for_this_machine(cfg)
        assert len(cfg.param_scheduler) == 2


def test_ssl_neck_naming_syncbn_trains_in_one_cpu_process(tmp_path):
    """mmpretrain's SSL configs name SyncBN in their 1-D necks: after this machine's
    fixes the Runner's model takes (N, C) features (a 'BN' rewrite would not)."""
    from mmengine.registry import init_default_scope
    cfg = Config(dict(model=dict(type='NonLinearNeck', in_channels=4, hid_channels=6,
                                 out_channels=3, with_avg_pool=False,
                                 norm_cfg=dict(type='SyncBN'))))
    compat.fix_config_for_this_machine(cfg)
    init_default_scope('mmpretrain')
    from mmengine.registry import MODELS
    from mmengine.model import revert_sync_batchnorm
    neck = revert_sync_batchnorm(MODELS.build(cfg.model)).train()  # as Runner.wrap_model
    out = neck((torch.randn(5, 4),))[0]
    assert out.shape == (5, 3)

"""Data-parallel wrappers: a DDP that also works on CPU (gloo), and MCR's own."""
import torch
import torch.distributed as torch_dist
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS
from torch import nn

from .mcr import MCR, WRAPPER_NEEDED


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that drops ``device_ids`` for a CPU module.

    MMEngine's Runner always passes ``device_ids=[LOCAL_RANK]`` to a DDP subclass,
    and torch's DDP refuses ``device_ids`` for CPU modules. With CUDA it behaves
    exactly like its parent.

    It also turns the SyncBN layers of a CPU module into ``_BatchNormXd`` (per-rank
    statistics), because torch's DDP refuses SyncBatchNorm in a CPU module: those the
    config names (``sslreg.compat`` keeps them, so that 1-D necks still get a 1-D-capable
    norm) and those it does not, such as mmpretrain's ``NonLinearNeck`` default.

    An :class:`~sslreg.models.mcr.MCR` is refused (it needs :class:`MCRDataParallel`).
    """

    def __init__(self, module, detect_anomalous_params=False, **kwargs):
        if isinstance(module, MCR):
            raise RuntimeError(WRAPPER_NEEDED)
        first = next(module.parameters(), None)
        if first is None or first.device.type == 'cpu':
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
            module = revert_sync_batchnorm(module)
        super().__init__(module, detect_anomalous_params=detect_anomalous_params, **kwargs)


@MODEL_WRAPPERS.register_module()
class MCRDataParallel(nn.Module):
    """Data parallelism for :class:`~sslreg.models.mcr.MCR`
    (``model_wrapper_cfg=dict(type='MCRDataParallel')``).

    Rank 0's parameters and buffers are broadcast once; from then on every rank applies
    the same averaged gradients (MCR's :meth:`~sslreg.models.mcr.MCR.train_step` averages
    them), so the replicas stay equal without DDP's reducer, which cannot see gradients
    taken with ``torch.autograd.grad``. SyncBN layers are reverted to per-rank BN
    (SyncBN's backward is not twice differentiable, and not available on CPU).
    """

    def __init__(self, module: MCR, **kwargs):
        super().__init__()
        if not isinstance(module, MCR):
            raise TypeError(f'MCRDataParallel wraps an MCR model, got {type(module).__name__}')
        self.module = revert_sync_batchnorm(module)
        self.module._mcr_data_parallel = True
        if torch_dist.is_available() and torch_dist.is_initialized():
            with torch.no_grad():
                for tensor in [*self.module.parameters(), *self.module.buffers()]:
                    torch_dist.broadcast(tensor, src=0)

    def train_step(self, data, optim_wrapper):
        return self.module.train_step(data, optim_wrapper)

    def val_step(self, data):
        return self.module.val_step(data)

    def test_step(self, data):
        return self.module.test_step(data)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

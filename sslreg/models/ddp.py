"""A DDP wrapper that also works on CPU (gloo)."""
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS


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
    """

    def __init__(self, module, detect_anomalous_params=False, **kwargs):
        first = next(module.parameters(), None)
        if first is None or first.device.type == 'cpu':
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
            module = revert_sync_batchnorm(module)
        super().__init__(module, detect_anomalous_params=detect_anomalous_params, **kwargs)

"""A DDP wrapper that also works on CPU (gloo)."""
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that drops ``device_ids`` for a CPU module.

    MMEngine's Runner always passes ``device_ids=[LOCAL_RANK]`` to a DDP subclass,
    and torch's DDP refuses ``device_ids`` for CPU modules. With CUDA it behaves
    exactly like its parent.

    It also turns SyncBN layers of a CPU module into plain BN, because torch's DDP
    refuses SyncBatchNorm in a CPU module. Config-level SyncBN is already rewritten by
    ``sslreg.compat.fix_config_for_this_machine``; this catches the layers a config does
    not name, such as mmpretrain's ``NonLinearNeck``, whose ``norm_cfg`` defaults to
    SyncBN. Each rank then normalizes with its own batch statistics.
    """

    def __init__(self, module, detect_anomalous_params=False, **kwargs):
        first = next(module.parameters(), None)
        if first is None or first.device.type == 'cpu':
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
            module = revert_sync_batchnorm(module)
        super().__init__(module, detect_anomalous_params=detect_anomalous_params, **kwargs)

"""Pure-PyTorch losses of the regularizers (no OpenMMLab imports).

One paper per module: :mod:`.vcreg` (VCReg), :mod:`.sim` (SIM / rhoSIM).
"""
from .sim import (LOSS_KINDS, gather_tokens, num_sampled_tokens, resample_to,
                  rho_sim_block_loss, sample_token_indices, sim_block_loss, sim_reconstruction_loss, standardize,
                  to_tokens)
from .dino import DINOLoss
from .ser import flatten_maps, patch_nt_xent, ser_equivariance_loss, ser_token_map_loss
from .vcreg import vcreg_fast, vcreg_loss

__all__ = [
    'vcreg_loss', 'vcreg_fast', 'resample_to', 'to_tokens', 'sample_token_indices',
    'gather_tokens', 'standardize', 'sim_reconstruction_loss', 'rho_sim_block_loss',
    'sim_block_loss', 'num_sampled_tokens', 'LOSS_KINDS'
]
__all__ += ['DINOLoss', 'patch_nt_xent', 'ser_equivariance_loss', 'ser_token_map_loss', 'flatten_maps']

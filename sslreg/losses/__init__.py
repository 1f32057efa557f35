"""Pure-PyTorch losses of the regularizers: the math of each paper (no OpenMMLab, and
nothing of sslreg outside this package; tests/test_import_rules.py).

One paper per module, its docstring the paper's equations with the paper's symbols:

* :mod:`.sim` -- SIM / ρSIM (Self Identity Mapping): block reconstruction losses;
* :mod:`.vcreg` -- VCReg (Variance-Covariance Regularization): Eq. 2, Algorithm 1's
  fast backward, the batch demean;
* :mod:`.vicreg` -- VICReg's SSL loss (Bardes et al.), its variance/covariance terms
  VCReg's with VICReg's scaling;
* :mod:`.decov` -- DeCov (Cogswell et al.), the VCReg paper's covariance-penalty baseline;
* :mod:`.ser` -- SER (Soft Equivariance Regularization): patch-wise NT-Xent between
  token maps;
* :mod:`.mec` -- MCR's maximum-entropy-coding losses (L_comp, L_mcr);
* :mod:`.dino` -- DINO's self-distillation loss (for SER on DINO);
* :mod:`.sidae` -- SidAE: SimSiam plus the denoising-autoencoder loss;
* :mod:`.distributed` -- the collectives they share (not a paper).
"""
from .decov import decov_covariance, decov_loss
from .dino import DINOLoss
from .distributed import (all_gather_plain, all_gather_with_grad, all_reduce_sum_, rank_mean,
                          sum_over_ranks, world_info)
from .mec import comp_loss, mcr_loss, mec_hparams, mec_lambda_warmup, mec_trace
from .ser import flatten_maps, patch_nt_xent, ser_equivariance_loss, ser_token_map_loss
from .sidae import dae_loss, negative_cosine, sidae_terms, simsiam_loss
from .sim import (LOSS_KINDS, PREDICTOR_POSITIONS, TOKEN_COUNTS, gather_tokens,
                  num_sampled_tokens, resample_to, rho_sim_block_loss, sample_token_indices,
                  sim_block_loss, sim_reconstruction_loss, standardize, to_tokens)
from .vcreg import COV_SCALES, batch_demean, vcreg_fast, vcreg_grad_share, vcreg_loss, vcreg_terms
from .vicreg import vicreg_loss, vicreg_terms

__all__ = [
    # sim
    'LOSS_KINDS', 'TOKEN_COUNTS', 'PREDICTOR_POSITIONS', 'resample_to', 'to_tokens',
    'sample_token_indices', 'gather_tokens', 'standardize', 'sim_reconstruction_loss',
    'rho_sim_block_loss', 'sim_block_loss', 'num_sampled_tokens',
    # vcreg
    'vcreg_loss', 'vcreg_fast', 'vcreg_terms', 'batch_demean', 'vcreg_grad_share', 'COV_SCALES',
    # vicreg, decov
    'vicreg_loss', 'vicreg_terms', 'decov_loss', 'decov_covariance',
    # ser
    'patch_nt_xent', 'ser_equivariance_loss', 'ser_token_map_loss', 'flatten_maps',
    # mec
    'mec_trace', 'mec_hparams', 'mec_lambda_warmup', 'comp_loss', 'mcr_loss',
    # dino
    'DINOLoss',
    # sidae
    'negative_cosine', 'simsiam_loss', 'dae_loss', 'sidae_terms',
    # distributed
    'world_info', 'all_gather_with_grad', 'all_gather_plain', 'sum_over_ranks', 'rank_mean',
    'all_reduce_sum_',
]

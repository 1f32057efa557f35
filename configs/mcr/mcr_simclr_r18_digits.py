# MCR on SimCLR with a ResNet-18 on the digits folder at 32 px (CPU-sized); the baseline
# is simclr_r18_digits.py. lambda1, lambda2: see the model dict.
_base_ = ['./simclr_r18_digits.py']

# several processes (dist_train.sh, slurm): MCR averages its bi-level gradients itself
model_wrapper_cfg = dict(type='MCRDataParallel')

model = dict(
    _delete_=True,
    type='MCR',
    algorithm={{_base_.model}},
    comp_mod=dict(in_channels=512, out_channels=128, fusion='concat'),
    # lambda1, lambda2: MCR's terms carry a real share of the gradient at these (measured on
    # the digits batch, tools/analysis/mcr_gradient_shares.py: 10% / 10% of L_ssl's gradient
    # on the embeddings; logged at the first iteration of every run). The paper's Table 6
    # (0.01, 0.1) belongs to its unstated mu: here it leaves the terms at 0.2-0.5%.
    lambda1=0.5,
    lambda2=0.2,
    mec_scale='mec_training',  # MEC's training mu = 1/(m lambda); 'coding_length': (m + d)/2
    meta_grad='second_order',  # or 'finite_difference', 'first_order'
    lam_warmup_epochs=1)       # MEC: 1/lambda from 8x over the first epochs

# Two optimizers (MMEngine's OptimWrapperDict): 'base' = the algorithm (theta, phi),
# 'meta' = CompMod (xi). Schedulers are keyed the same way.
optim_wrapper = dict(
    _delete_=True,
    constructor='MCROptimWrapperConstructor',
    base={{_base_.optim_wrapper}},
    meta=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3)))
param_scheduler = dict(_delete_=True, base={{_base_.param_scheduler}}, meta=[])

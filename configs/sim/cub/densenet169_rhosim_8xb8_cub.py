# DenseNet-169 on CUB with rhoSIM (rho=0.2, lambda=5e-3) on every dense layer (6+12+32+32
# = 82 layers). Everything else is the baseline's.
#
# The blocks are the dense layers (`backbone.stages.*.block.*`). A dense layer is called
# with the list of all earlier feature maps and computes its 32 new channels from their
# concatenation; sslreg reads such a list as that concatenation, so each layer learns to
# reconstruct exactly the input it computed from. (Tapping the dense blocks,
# `backbone.stages.*`, would be useless: a dense block's output *contains* its input
# channels, so the reconstruction is solved by channel selection and constrains nothing.)
# preset='paper' (set explicitly): this config reproduces a run of the paper, so the loss
# follows the paper's text: Eq. 1's sum over blocks, squared standardized MSE,
# lambda=5e-3, projection width K = int(sqrt(C_in)) per block (near the paper's Table 3
# parameter deltas); head form and widths are the preset's (sslreg/regularizers/sim.py,
# PRESETS), so the config sets neither head nor dim. preset='authors_code' is the
# released sim_loss.py instead (lambda per block, mean over blocks, un-squared L2, K=128).
_base_ = ['./densenet169_8xb8_cub.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 224, 224),  # reads the widths only
    regularizers=dict(
        sim=dict(type='RhoSIM', layers='backbone.stages.*.block.*', rho=0.2, preset='paper',
                 loss_weight=5e-3)))

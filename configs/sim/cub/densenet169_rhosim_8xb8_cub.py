# DenseNet-169 on CUB with rhoSIM (rho=0.2, lambda=5e-3) on every dense layer (6+12+32+32
# = 82 layers). Everything else is the baseline's.
#
# Which module is "the block": a dense layer computes its 32 new channels from the
# concatenation of all earlier features, but mmpretrain's DenseLayer is called with a
# *list* of tensors, which sslreg's taps cannot read as a block input. So each layer is
# tapped at its last convolution (`...block.N.conv2`): the output side is exactly the
# dense layer's output (drop_rate=0), the reconstruction target is the layer's own
# bottleneck (BN-ReLU-1x1 conv of the concatenated input, BN-ReLU), i.e. the layer's
# input as it enters the 3x3 conv. Tapping the dense blocks (`backbone.stages.*`)
# instead would be useless: a dense block's output *contains* its input channels, so the
# reconstruction is solved by channel selection and constrains nothing.
_base_ = ['./densenet169_8xb8_cub.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 224, 224),  # reads the widths only
    regularizers=dict(
        sim=dict(type='RhoSIM', layers='backbone.stages.*.block.*.conv2', rho=0.2,
                 loss_weight=5e-3)))

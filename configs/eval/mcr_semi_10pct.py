# MCR's semi-supervised evaluation with 10% of the ImageNet-1k labels ("Self-Supervised
# Representation Learning with Meta Comprehensive Regularization"; SimCLR / BYOL / Barlow
# Twins, ResNet-50: configs/mcr/*_in1k.py).
#
#   python tools/linear_eval.py configs/mcr/mcr_simclr_r50_1xb256-coslr-200e_in1k.py \
#       work_dirs/mcr_simclr/epoch_200.pth --protocol-config configs/eval/mcr_semi_10pct.py
#
# MCR's own semi-supervised recipe (linear or fine-tuned, epochs, subset list) could not be
# checked here; SimCLR / BYOL, the usual reference for this protocol, fine-tune the whole
# network on the label subset. This default (sslreg's choice) is the cheaper, deterministic
# linear classifier on frozen, average-pooled features of the 10% subset; the fine-tuned
# form is mcr_semi_10pct_finetune.py.
# Subset: class-balanced, max(1, round(10% x n_c)) images of each class c, drawn from the
# seed (SimCLR's fixed ImageNet 10% image list is not used: it is not shipped here).
# Classifier: 50 epochs, SGD lr 0.05, momentum 0.9, batch 256, no weight decay, cosine,
# no warm-up, standardized features (sslreg's choices).
# Digits twin (tests): mcr_semi_10pct_digits.py.
_base_ = ['./_base_/frozen_linear_50e.py', './_base_/imagenet_224.py']
protocol = dict(
    name='mcr_semi_10pct',
    paper='MCR: semi-supervised, 10% of the labels',
    dataset='ImageNet-1k',
    labels='10%')

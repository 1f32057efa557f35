# SER's linear evaluation (Lee et al., ICLR 2026, ViT-S/16 on MoCo v3 / DINO / Barlow Twins):
# a linear classifier on the [CLS] tokens of the last 4 transformer blocks concatenated
# (DINO's n_last_blocks=4: 4 x 384 = 1536 features for ViT-S), 50 epochs, cosine schedule,
# no warm-up, ImageNet-1k train -> val, all labels.
#
#   python tools/linear_eval.py configs/ser/ser-mocov3_vit-small-p16_8xb256-coslr-100e_in1k.py \
#       work_dirs/ser-mocov3/epoch_100.pth --protocol-config configs/eval/ser_last4cls_linear_50e.py
#
# Works for LateClsViT (needs cls_insert_layer <= depth - 4: the paper's k = 3 of 12 is) and
# mmpretrain's VisionTransformer / MoCoV3ViT. Where the paper is not specific, sslreg's
# choices: mmpretrain's final-LayerNorm convention (ln1 on the last block's output only;
# norm_each=True gives DINO's, ln1 on all four), features computed once from 256-short-side
# 224 centre crops (no training augmentation), standardized with the training statistics,
# SGD lr 0.05, momentum 0.9, batch 256, no weight decay.
# Digits twin (tests): ser_last4cls_linear_50e_digits.py.
_base_ = ['./_base_/frozen_linear_50e.py', './_base_/imagenet_224.py']
protocol = dict(
    name='ser_last4cls_linear_50e',
    paper='SER (Lee et al., ICLR 2026): linear probe on the last-4 [CLS] tokens',
    dataset='ImageNet-1k',
    labels='100%',
    features=dict(type='last_blocks_cls', num_blocks=4, norm_each=False))

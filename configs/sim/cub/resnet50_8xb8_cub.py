# CUB-200-2011 fine-tuning of ResNet-50, no regularizer: the SIM paper's fine-grained
# baseline, which is mmpretrain's stock recipe unchanged (cub_bs64 schedule: SGD lr 0.01,
# momentum 0.9, wd 5e-4, Nesterov, 5-epoch linear warm-up then cosine, 100 epochs;
# 448 px crops; batch 64 = 8 GPUs x 8). The paper does not state the resolution; its
# Table 3 FLOPs fit 384 px (resnet50_8xb8_cub-384px.py).
# Weights: the stock config's ImageNet-21k ResNet-50 (Alibaba-MIIL, converted by
# OpenMMLab), downloaded from download.openmmlab.com on first use; offline, download it
# once and set model.backbone.init_cfg.checkpoint to the local file.
# Data: data/CUB_200_2011/ as mmpretrain's CUB reads it (images/, images.txt,
# image_class_labels.txt, train_test_split.txt).
_base_ = ['mmpretrain::resnet/resnet50_8xb8_cub.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

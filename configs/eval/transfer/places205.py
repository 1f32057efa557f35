# Places-205 in VCReg's Table 1: Barlow Twins' linear protocol (Zbontar et al. 2021 follow
# PIRL's settings, i.e. Goyal et al. 2019's benchmark; the numbers here are VISSL's
# benchmark/linear_image_classification/places205/eval_resnet_8gpu_transfer_places205_linear.yaml
# -- the Barlow Twins text itself was not re-checked in this session): a linear classifier
# trained by SGD on frozen features, 14 epochs, lr 0.01 (batch 256) x0.1 at epochs 4 / 8 /
# 12, Nesterov momentum 0.9, weight decay 5e-4; top-1 on the official val split. Run by
# tools/linear_eval.py's frozen mode (through tools/transfer_eval.py --datasets places205,
# or directly: tools/linear_eval.py CONFIG CKPT --protocol-config <this file>).
#
# sslreg's departures (tools/linear_eval.py's protocol): features computed once from
# 256-short-side / 224 centre crops (VISSL trains on RandomResizedCrop + flip); the global
# average-pooled last stage (2048-d for a ResNet-50; VISSL pools res5 6x6 -> 8192-d);
# standardized with the training statistics (VISSL's head has a BatchNorm); the features
# are held in memory (2.4 M x 2048 float32 = 20 GB for Places-205).
#
# Data: the official release, data/places205/{images256/, trainvalsplit_places205/
# {train,val}_places205.csv} (lines 'a/abbey/00000001.jpg 0'), read by mmpretrain's Places205.
_base_ = ['../_base_/frozen_linear_50e.py']
protocol = dict(
    name='transfer_places205',
    paper='VCReg Table 1 (Barlow Twins / PIRL linear protocol on frozen features)',
    dataset='Places-205',
    labels='100%',
    epochs=14,
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    lr_steps=(4, 8, 12),
    nesterov=True,
    batch_size=256)
linear_eval = dict(
    train=dict(type='Places205', data_root='data/places205', data_prefix='images256',
               ann_file='trainvalsplit_places205/train_places205.csv'),
    val=dict(type='Places205', data_root='data/places205', data_prefix='images256',
             ann_file='trainvalsplit_places205/val_places205.csv'),
    size=224,
    resize_short=256)

# iNaturalist 2018 in VCReg's Table 1: Barlow Twins' linear protocol (Zbontar et al. 2021
# follow PIRL's settings, i.e. Goyal et al. 2019's benchmark; the numbers here are VISSL's
# benchmark/linear_image_classification/inaturalist18/eval_resnet_8gpu_transfer_inaturalist18_linear.yaml
# -- the Barlow Twins text itself was not re-checked in this session): a linear classifier
# trained by SGD on frozen features, 84 epochs, lr 0.01 (batch 256) x0.1 at epochs 24 / 48
# / 72, Nesterov momentum 0.9, weight decay 5e-4; top-1 on the official val split (8,142
# classes). Run by tools/linear_eval.py's frozen mode (through tools/transfer_eval.py
# --datasets inat18, or directly).
#
# sslreg's departures: as in places205.py (one feature pass of 256 / 224 centre crops,
# 2048-d pooled features, standardized).
#
# Data: data/inat2018/{train_val2018/, train2018.json, val2018.json} as released; mmpretrain
# has no iNat class, so make the two lists mmpretrain's CustomDataset reads once:
#   python tools/data/inat18_lists.py data/inat2018   # -> data/inat2018/meta/{train,val}.txt
_base_ = ['../_base_/frozen_linear_50e.py']
protocol = dict(
    name='transfer_inat18',
    paper='VCReg Table 1 (Barlow Twins / PIRL linear protocol on frozen features)',
    dataset='iNat18',
    labels='100%',
    epochs=84,
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    lr_steps=(24, 48, 72),
    nesterov=True,
    batch_size=256)
linear_eval = dict(
    train=dict(type='CustomDataset', data_root='data/inat2018', ann_file='meta/train.txt',
               with_label=True),
    val=dict(type='CustomDataset', data_root='data/inat2018', ann_file='meta/val.txt',
             with_label=True),
    size=224,
    resize_short=256)

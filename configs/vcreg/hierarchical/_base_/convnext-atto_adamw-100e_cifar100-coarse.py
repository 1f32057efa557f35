# The hierarchical-classification experiment of the VCReg paper (Table 5, App. C.3):
# ConvNeXt-Atto (mmpretrain's arch 'atto': depths 2-2-6-2, widths 40-80-160-320, 3.4 M
# parameters with this head) trained on CIFAR-100's 20 superclasses (CIFAR100Coarse: the
# pickles' coarse_labels), then probed linearly on the 100 subclasses
# (configs/eval/vcreg/vcreg_hierarchical_linear_100e.py, tools/linear_eval.py).
#
# Pre-training recipe: the paper's probe recipe is what we have (100 epochs, AdamW lr 0.016,
# cosine, wd 0.05, batch 256); its pre-training recipe is taken the same, plus the
# long-tail family's 10 warm-up epochs and norm layers excluded from the decay (a choice:
# ConvNeXt needs a warm-up at this lr). Plain cross-entropy (no Mixup/CutMix, no label
# smoothing, drop path 0, no EMA: mmpretrain's ImageNet ConvNeXt extras are off), 32 px
# inputs through the stock stem (4x4 patches: 8x8, 4x4, 2x2, 1x1 maps), mmpretrain's CIFAR
# pipeline (random crop 32 pad 4, h-flip). Test split: the 10,000 CIFAR-100 test images,
# superclass accuracy.
_base_ = ['mmpretrain::_base_/datasets/cifar100_bs16.py',
          'mmpretrain::_base_/default_runtime.py', '../../_base_/adamw_warmup-cosine_100e.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

data_preprocessor = dict(num_classes=20)
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ConvNeXt', arch='atto', drop_path_rate=0.0),
    head=dict(type='LinearClsHead', num_classes=20, in_channels=320,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, ), init_cfg=None),
    init_cfg=dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.))

# VCReg, for the *_vcreg_* file: every ConvNeXt block (12), not the downsampling layers, as
# configs/vcreg/convnext-tiny_vcreg_32xb128_in1k.py. Weights from the paper's grid (App. C.1:
# alpha in {0.16, 0.32, 0.64, 1.28}, beta in {0.01, 0.02, 0.04, 0.08, 0.16}, "ImageNet,
# long-tail, ConvNeXt-Atto"); picked alpha = 0.16, beta = 0.04 (a choice, sweep).
# cov_scale='algorithm1', demean=True, sync=False, delta=None: see
# configs/vcreg/resnet50_vcreg_8xb32_in1k.py for the reasons.
vcreg = dict(type='VCReg', layers='backbone.stages.*.*', alpha=0.16, beta=0.04, delta=None,
             mode='fast', cov_scale='algorithm1', demean=True, sync=False)

train_dataloader = dict(batch_size=256, num_workers=4,
                        dataset=dict(type='CIFAR100Coarse'))
val_dataloader = dict(batch_size=256, num_workers=4, dataset=dict(type='CIFAR100Coarse'))
test_dataloader = val_dataloader

default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2))
randomness = dict(seed=0)

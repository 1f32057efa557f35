# SidAE (SimSiam + denoising decoder, w = 0.5) with a ResNet-18 on the digits ImageNet-style
# folder at 32 px, sized for a CPU. Baselines on the same views: simsiam_r18_digits.py
# (w = 0 is SimSiam exactly) and dae_r18_digits.py (w = 1).
_base_ = 'mmpretrain::simsiam/simsiam_resnet50_8xb32-coslr-100e_in1k.py'
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

data_root = 'data/small/digits_imagenet/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    # two views (the paper's CIFAR augmentation + its Gaussian blur for MNIST-like data)
    # and the clean image
    dict(type='SidAEViews', size=32, gaussian_blur=True),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=32, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))

model = dict(
    type='SidAE',
    backbone=dict(depth=18, norm_cfg=dict(type='BN')),
    neck=dict(in_channels=512, hid_channels=512, out_channels=512,
              norm_cfg=dict(type='BN1d')),
    head=dict(predictor=dict(in_channels=512, hid_channels=128, out_channels=512,
                             norm_cfg=dict(type='BN1d'))),
    decoder=dict(in_channels=512, channels=(256, 128, 64, 32, 16), out_size=32),
    w=0.5)

# The paper's optimizer (SGD 0.03, momentum 0.9, wd 5e-4, cosine); SimSiam's fixed
# predictor learning rate kept.
lr = 0.03
optim_wrapper = dict(optimizer=dict(type='SGD', lr=lr, momentum=0.9, weight_decay=5e-4))
train_cfg = dict(max_epochs=2)
# no T_max / end: the cosine spans train_cfg.max_epochs, also when set from the command line
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0)]
custom_hooks = [dict(type='SimSiamHook', priority='HIGH', fix_pred_lr=True, lr=lr)]
default_hooks = dict(logger=dict(type='LoggerHook', interval=5),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=32)

# tools/linear_eval.py: frozen backbone, linear classifier on 1% / 100% of the labels.
linear_eval = dict(
    train=dict(type='ImageNet', data_root=data_root, split='train'),
    val=dict(type='ImageNet', data_root=data_root, split='val'),
    size=32)

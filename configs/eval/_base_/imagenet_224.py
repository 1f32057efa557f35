# ImageNet-1k for a linear probe: data/imagenet in mmpretrain's layout, short side 256, centre
# crop 224 (the protocols' _digits twins replace it with the digits folder).
linear_eval = dict(
    train=dict(type='ImageNet', data_root='data/imagenet', split='train'),
    val=dict(type='ImageNet', data_root='data/imagenet', split='val'),
    size=224,
    resize_short=256)

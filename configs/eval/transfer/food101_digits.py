# food101.py on the digits ImageNet-style folder (the tests' twin; data/small, `make data`):
# the same protocol, train split -> 20% held out for lambda, val split as the test set.
_base_ = './food101.py'
data_root = 'data/small/digits_imagenet/'
protocol = dict(name='transfer_food101_digits', dataset='digits (ImageNet-style folder)')
transfer = dict(
    _delete_=True,
    train=dict(type='ImageNet', data_root=data_root, split='train'),
    val=None,
    test=dict(type='ImageNet', data_root=data_root, split='val'),
    size=32,
    resize_short=32,
    interpolation='bicubic')

# places205.py on the digits ImageNet-style folder (the tests' twin): the same SGD linear
# protocol, train -> val, 32 px.
_base_ = './places205.py'
data_root = 'data/small/digits_imagenet/'
protocol = dict(name='transfer_places205_digits', dataset='digits (ImageNet-style folder)')
linear_eval = dict(
    _delete_=True,
    train=dict(type='ImageNet', data_root=data_root, split='train'),
    val=dict(type='ImageNet', data_root=data_root, split='val'),
    size=32)

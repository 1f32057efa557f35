# vcreg_hierarchical_linear_100e.py on digits_cifar100 (the tests' twin: CIFAR-100's
# python layout, fine labels = the digit, read without the md5 check), e.g.
#   python tools/linear_eval.py \
#       configs/vcreg/hierarchical/convnext-atto_vcreg_1xb256-100e_cifar100-coarse.py CKPT \
#       --protocol-config configs/eval/vcreg/vcreg_hierarchical_linear_100e_digits.py
_base_ = './vcreg_hierarchical_linear_100e.py'
data_root = 'data/small/digits_cifar100/'
protocol = dict(name='vcreg_hierarchical_linear_100e_digits',
                dataset='digits (CIFAR-100 layout, fine labels)')
linear_eval = dict(
    _delete_=True,
    train=dict(type='UncheckedCIFAR100', data_root=data_root, split='train'),
    val=dict(type='UncheckedCIFAR100', data_root=data_root, split='test'),
    size=32)

# ser_last4cls_linear_50e.py on the digits ImageNet-style folder at 32 px (the tests' twin).
# The tiny SER digits configs have 4 blocks with the CLS token after block 2, so the last 4
# blocks do not all carry one: give the backbone 6 blocks, e.g.
#   python tools/linear_eval.py configs/ser/ser-mocov3_vit-tiny-p8_digits.py none \
#       --protocol-config configs/eval/ser_last4cls_linear_50e_digits.py \
#       --cfg-options model.backbone.arch.num_layers=6
_base_ = './ser_last4cls_linear_50e.py'
data_root = 'data/small/digits_imagenet/'
protocol = dict(name='ser_last4cls_linear_50e_digits', dataset='digits (ImageNet-style folder)')
linear_eval = dict(
    _delete_=True,
    train=dict(type='ImageNet', data_root=data_root, split='train'),
    val=dict(type='ImageNet', data_root=data_root, split='val'),
    size=32)

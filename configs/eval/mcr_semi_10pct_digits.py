# mcr_semi_10pct.py on the digits ImageNet-style folder at 32 px (the tests' twin):
#   python tools/linear_eval.py configs/mcr/mcr_simclr_r18_digits.py CKPT \
#       --protocol-config configs/eval/mcr_semi_10pct_digits.py
# (--finetune, or --protocol-options protocol.mode=finetune, for the fine-tuned form).
_base_ = './mcr_semi_10pct.py'
data_root = 'data/small/digits_imagenet/'
protocol = dict(name='mcr_semi_10pct_digits', dataset='digits (ImageNet-style folder)')
linear_eval = dict(
    _delete_=True,
    train=dict(type='ImageNet', data_root=data_root, split='train'),
    val=dict(type='ImageNet', data_root=data_root, split='val'),
    size=32)

# Flowers-102 in VCReg's Table 1 (App. C.1): logistic regression on frozen features,
# lambda picked on the dataset's val split (refit on train + val)
# (configs/eval/_base_/transfer_logreg.py).
#
#   python tools/transfer_eval.py CONFIG CHECKPOINT --datasets flowers102
_base_ = ['../_base_/transfer_logreg.py']
protocol = dict(
    name='transfer_flowers102',
    paper="VCReg Table 1 / App. C.1 (Kornblith et al. 2019's logistic-regression probe)",
    dataset='Flowers-102')
transfer = dict(
    train=dict(type='Flowers102', data_root='data/Flowers102', split='train'),
    val=dict(type='Flowers102', data_root='data/Flowers102', split='val'),
    test=dict(type='Flowers102', data_root='data/Flowers102', split='test'))

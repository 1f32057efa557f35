# Food-101 in VCReg's Table 1 (App. C.1): logistic regression on frozen features, lambda
# picked on 20% of each class of train held out (seed 0); mmpretrain's Food101 has train /
# test only (configs/eval/_base_/transfer_logreg.py).
#
#   python tools/transfer_eval.py CONFIG CHECKPOINT --datasets food101
_base_ = ['../_base_/transfer_logreg.py']
protocol = dict(
    name='transfer_food101',
    paper="VCReg Table 1 / App. C.1 (Kornblith et al. 2019's logistic-regression probe)",
    dataset='Food-101')
transfer = dict(
    train=dict(type='Food101', data_root='data/food-101', split='train'),
    val=None,
    test=dict(type='Food101', data_root='data/food-101', split='test'))

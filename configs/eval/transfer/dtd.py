# DTD in VCReg's Table 1 (App. C.1): logistic regression on frozen features, lambda picked
# on the dataset's val split (imdb.mat's set field: split 1; refit on train + val)
# (configs/eval/_base_/transfer_logreg.py).
#
#   python tools/transfer_eval.py CONFIG CHECKPOINT --datasets dtd
_base_ = ['../_base_/transfer_logreg.py']
protocol = dict(
    name='transfer_dtd',
    paper="VCReg Table 1 / App. C.1 (Kornblith et al. 2019's logistic-regression probe)",
    dataset='DTD')
transfer = dict(
    train=dict(type='DTD', data_root='data/dtd', split='train'),
    val=dict(type='DTD', data_root='data/dtd', split='val'),
    test=dict(type='DTD', data_root='data/dtd', split='test'))

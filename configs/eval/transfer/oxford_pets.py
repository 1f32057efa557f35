# Oxford-IIIT Pets in VCReg's Table 1 (App. C.1): logistic regression on frozen features,
# lambda picked on 20% of each class of trainval held out (seed 0); mmpretrain's
# OxfordIIITPet has trainval / test only (configs/eval/_base_/transfer_logreg.py).
#
#   python tools/transfer_eval.py CONFIG CHECKPOINT --datasets oxford_pets
_base_ = ['../_base_/transfer_logreg.py']
protocol = dict(
    name='transfer_oxford_pets',
    paper="VCReg Table 1 / App. C.1 (Kornblith et al. 2019's logistic-regression probe)",
    dataset='Oxford-IIIT Pets')
transfer = dict(
    train=dict(type='OxfordIIITPet', data_root='data/Oxford-IIIT_Pets', split='trainval'),
    val=None,
    test=dict(type='OxfordIIITPet', data_root='data/Oxford-IIIT_Pets', split='test'))

# Stanford Cars in VCReg's Table 1 (App. C.1): logistic regression on frozen features,
# lambda picked on 20% of each class of train held out (seed 0); mmpretrain's StanfordCars
# has train / test only (configs/eval/_base_/transfer_logreg.py).
#
#   python tools/transfer_eval.py CONFIG CHECKPOINT --datasets stanford_cars
_base_ = ['../_base_/transfer_logreg.py']
protocol = dict(
    name='transfer_stanford_cars',
    paper="VCReg Table 1 / App. C.1 (Kornblith et al. 2019's logistic-regression probe)",
    dataset='Stanford Cars')
transfer = dict(
    train=dict(type='StanfordCars', data_root='data/Stanford_Cars', split='train'),
    val=None,
    test=dict(type='StanfordCars', data_root='data/Stanford_Cars', split='test'))

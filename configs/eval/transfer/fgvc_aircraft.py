# FGVC Aircraft in VCReg's Table 1 (App. C.1): logistic regression on frozen features,
# lambda picked on the dataset's val split (refit on train + val = trainval)
# (configs/eval/_base_/transfer_logreg.py).
#
#   python tools/transfer_eval.py CONFIG CHECKPOINT --datasets fgvc_aircraft
_base_ = ['../_base_/transfer_logreg.py']
protocol = dict(
    name='transfer_fgvc_aircraft',
    paper="VCReg Table 1 / App. C.1 (Kornblith et al. 2019's logistic-regression probe)",
    dataset='FGVC Aircraft')
transfer = dict(
    train=dict(type='FGVCAircraft', data_root='data/fgvc-aircraft-2013b', split='train'),
    val=dict(type='FGVCAircraft', data_root='data/fgvc-aircraft-2013b', split='val'),
    test=dict(type='FGVCAircraft', data_root='data/fgvc-aircraft-2013b', split='test'))

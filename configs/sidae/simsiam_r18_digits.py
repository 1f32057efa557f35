# The SimSiam baseline of SidAE: mmpretrain's SimSiam on exactly the views of
# sidae_r18_digits.py (SidAEViews' third image, the clean one, is not used), the same
# encoder, predictor and optimizer. (SidAE with w = 0 computes the same loss.)
_base_ = ['./sidae_r18_digits.py']
model = dict(
    _delete_=True,
    type='SimSiam',
    backbone={{_base_.model.backbone}},
    neck={{_base_.model.neck}},
    head={{_base_.model.head}})

# The evidence twin with VCReg alone (no rhoSIM): the VCReg paper's neural-collapse view
# (Table 6: CDNV up, NCC agreement down) of the demo, against
# resnet18_digits_cub_baseline_evidence.py.
_base_ = ['./resnet18_digits_cub_rhosim_vcreg_evidence.py']

model = dict(regularizers=dict(_delete_=True, vcreg={{_base_.model.regularizers.vcreg}}))

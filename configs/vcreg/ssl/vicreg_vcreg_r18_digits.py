# vicreg_r18_digits.py + VCReg on every backbone block (both views count), as
# vicreg_resnet50_vcreg_8xb256-coslr-100e_in1k.py (alpha 0.16, beta 0.04, 'algorithm1',
# demean): the SSL + VCReg composition on a CPU.
_base_ = ['./vicreg_r18_digits.py']

model = dict(
    _delete_=True,
    type='RegularizedModel',
    architecture={{_base_.model}},
    probe_input=(1, 3, 32, 32),
    regularizers=dict(vcreg=dict(
        type='VCReg', layers='backbone.layer*.*', alpha=0.16, beta=0.04, delta=None,
        mode='fast', cov_scale='algorithm1', demean=True, sync=False)))
custom_hooks = [dict(type='RegularizerHook')]

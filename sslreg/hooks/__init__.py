from .grad_norm_hook import GradNormHook
from .regularizer_hook import RegularizerHook

__all__ = ['RegularizerHook', 'GradNormHook']

from .regularizer_hook import RegularizerHook

__all__ = ['RegularizerHook']

"""Data transforms of sslreg (registered in MMEngine's root ``TRANSFORMS``)."""
from .sidae_views import SidAEViews
from .transforms import GeometricGroupViews

__all__ = ['GeometricGroupViews']

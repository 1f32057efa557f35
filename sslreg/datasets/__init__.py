"""Data transforms of sslreg (registered in MMEngine's root ``TRANSFORMS``).

* :class:`GeometricGroupViews` (``transforms.py``) -- SER's invertible views of one
  image, with the group elements that made them;
* :class:`SidAEViews` (``sidae_views.py``) -- SidAE's two noisy views and the clean
  image (:func:`paper_view_pipeline`: the paper's augmentation).
"""
from .sidae_views import SidAEViews, paper_view_pipeline
from .transforms import EQUIV_CROPS, GeometricGroupViews

__all__ = ['GeometricGroupViews', 'EQUIV_CROPS', 'SidAEViews', 'paper_view_pipeline']

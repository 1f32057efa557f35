"""sslreg: representation-learning regularizers as an OpenMMLab 2.x plug-in.

Importing the package (``custom_imports=dict(imports=['sslreg'])`` in a config)
registers its modules in MMEngine's root registries and applies ``sslreg.compat``.
"""
from . import compat
from .version import __version__

compat.apply()

from . import datasets, evaluation, hooks, models  # noqa: E402,F401  (registers)

__all__ = ['__version__', 'compat']

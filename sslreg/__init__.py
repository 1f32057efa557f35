"""sslreg: representation-learning regularizers as an OpenMMLab 2.x plug-in.

Importing the package (``custom_imports=dict(imports=['sslreg'])`` in a config)
registers its modules in MMEngine's root registries and applies ``sslreg.compat``.

The core needs torch only: ``sslreg.losses`` (the math) and ``sslreg.regularizers``
(taps, loss terms, gradients on any ``nn.Module``). Python runs this file before
either, so the OpenMMLab part is imported only when it can be:

* mmengine not installed: **torch-only mode**, silently (a plain-PyTorch user asked
  for nothing else). ``sslreg.models``, ``hooks``, ``datasets``, ``evaluation`` and
  ``launch`` then raise :class:`ModuleNotFoundError` saying what to install, whether
  reached as ``import sslreg.models``, ``from sslreg import models`` or
  ``sslreg.models``.
* mmengine installed: everything is imported and registered as before. If a further
  OpenMMLab package is missing (say mmdet), the same torch-only mode follows, with a
  warning, because with mmengine present the import was most likely a config's
  ``custom_imports`` that expects the names registered.

Only a missing OpenMMLab package (``ModuleNotFoundError`` whose ``name`` is exactly one
of :data:`OPENMMLAB_PACKAGES`) leads there; any other import error (a dependency of
mmengine, mmseg's ftfy, a broken mmcv build such as a missing ``mmcv._ext``, a
version mismatch) propagates unchanged.
"""
import sys
import warnings

from .version import __version__

#: The OpenMMLab import names sslreg's adapters use (mmsegmentation installs ``mmseg``).
OPENMMLAB_PACKAGES = ('mmengine', 'mmcv', 'mmpretrain', 'mmseg', 'mmdet')
#: The sub-packages that need them.
OPENMMLAB_PARTS = ('architecture', 'datasets', 'evaluation', 'hooks', 'models', 'launch')

INSTALL_HINT = (
    'Install the OpenMMLab 2.x stack sslreg is built for: `bash tools/install.sh` in a '
    'checkout of sslreg (it also builds mmcv 2.1.0, which has no wheel on PyPI), or '
    '`pip install mmengine==0.10.7 mmpretrain==1.2.0 mmsegmentation==1.2.2 mmdet==3.3.0` '
    'plus mmcv 2.1.0 built from source (README, "Quick start"). '
    'sslreg.losses and sslreg.regularizers need torch only and work without it.')

#: True when the OpenMMLab part is imported and its names are registered.
openmmlab_available = False
#: The ModuleNotFoundError that put sslreg in torch-only mode (None when available).
openmmlab_error = None


class OpenMMLabNotInstalledWarning(UserWarning):
    """mmengine is installed but another OpenMMLab package sslreg needs is not."""


def _is_missing_openmmlab(err: BaseException) -> bool:
    return isinstance(err, ModuleNotFoundError) and err.name in OPENMMLAB_PACKAGES


def _needs_openmmlab(part: str) -> ModuleNotFoundError:
    err = openmmlab_error
    error = ModuleNotFoundError(
        f'sslreg.{part} needs OpenMMLab, and {err.name!r} is not installed ({err}). '
        + INSTALL_HINT, name=err.name)
    error.__cause__ = err
    return error


class _OpenMMLabPartFinder:
    """In torch-only mode, ``import sslreg.models`` (and the other OpenMMLab parts)
    fails with the install hint instead of a bare "No module named 'mmengine'".
    Consulted only for those names, and only while they are not imported."""

    names = frozenset(f'{__name__}.{part}' for part in OPENMMLAB_PARTS)

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname in cls.names and openmmlab_error is not None:
            raise _needs_openmmlab(fullname.rpartition('.')[2])
        return None


def __getattr__(name):
    # only reached for names this module lacks: an OpenMMLab part in torch-only mode
    if name in OPENMMLAB_PARTS and openmmlab_error is not None:
        raise _needs_openmmlab(name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def _import_openmmlab_part():
    # Eager on purpose. Measured (2026-12, 2 cores, one at a time): `import sslreg` is
    # 3.6 s of imports: torch 1.1 s, mmengine.runner + mmcv 0.7 s, mmpretrain.models 1.8 s
    # (with the mmdet.models, torchvision, scipy and sklearn it pulls in), mmseg.evaluation
    # 0.02 s, sslreg's own code 0.07 s. A config's custom_imports=['sslreg'] must register
    # every name it uses, and MMEngine's root registries cannot import a module on lookup.
    # Deferring the frameworks would not pay in a run either: sslreg.models subclasses
    # mmpretrain classes (LateClsViT, TransferViT, SER*, SidAE) and sslreg.evaluation an
    # mmseg metric (VesselDiceMetric), and the frameworks import each other --
    # mmpretrain.models imports mmdet.models (ResLayerExtraNorm), mmdet.models mmpretrain,
    # mmseg.models mmdet -- so whichever default_scope a config has, its first model
    # build imports mmpretrain and mmdet anyway (and mmseg costs 0.02 s after them).
    # What is avoidable, `tools/train.py --help` and the like, the tools avoid: they parse
    # their arguments before importing sslreg (tools/_cli.py).
    global openmmlab_available
    from . import compat
    compat.apply()
    from . import datasets, evaluation, hooks, models  # noqa: F401  (registers)
    openmmlab_available = True


try:
    import mmengine  # noqa: F401
except ModuleNotFoundError as err:
    if not _is_missing_openmmlab(err):
        raise
    openmmlab_error = err
else:
    try:
        _import_openmmlab_part()
    except ModuleNotFoundError as err:
        if not _is_missing_openmmlab(err):
            raise
        openmmlab_error = err
        warnings.warn(
            f"sslreg: {err.name!r} is not installed ({err}), so sslreg's OpenMMLab models, "
            'hooks and transforms are NOT registered (a config naming RegularizedModel, '
            'RhoSIM, RegularizerHook, ... will not build). ' + INSTALL_HINT,
            OpenMMLabNotInstalledWarning, stacklevel=2)
if openmmlab_error is not None:
    # Parts imported before the failure stay (their names are registered); the finder
    # is consulted only for the others, which are not in sys.modules.
    sys.meta_path.insert(0, _OpenMMLabPartFinder)

__all__ = ['__version__', 'OPENMMLAB_PACKAGES', 'INSTALL_HINT', 'openmmlab_available']
if openmmlab_available:
    __all__.append('compat')

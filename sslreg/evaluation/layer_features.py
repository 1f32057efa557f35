"""``LayerFeatureHook``: features and regularizer diagnostics of named layers in val/test.

How the features reach :class:`~sslreg.evaluation.collapse.FeatureCollapseMetric`:
MMEngine's val loop calls ``model.val_step(batch)`` and then hands the returned data
samples to the evaluator. During a val/test epoch this hook puts

* a :class:`~sslreg.regularizers.taps.LayerRecorder` on the named layers (and one on
  the blocks of each ρSIM/SIM regularizer, reading their inputs as the regularizer
  does), recording while the model (the architecture of a ``RegularizedModel``:
  :func:`~sslreg.architecture.architecture_of`) runs a ``mode='predict'`` forward, and
* a forward pre-hook/hook pair on that model, which opens the recording and, when the
  forward returns its list of data samples, closes it and writes into sample ``i``

  - ``layer_features``: ``{layer: (C,) tensor}``, the layer's output of sample ``i``,
    average-pooled over space (``(N, C, H, W)``) or tokens (``(N, L, C)``);
    a tuple output (a backbone's stages) contributes its last tensor;
  - ``layer_stats``: ``{key: float}``, this batch's diagnostics (the same for every
    sample of the batch, so the metric's mean over samples is the mean over batches
    weighted by their size):
    ``<layer>/vcreg_variance`` and ``<layer>/vcreg_covariance`` (VCReg's two terms,
    :func:`sslreg.losses.vcreg.vcreg_terms`, spatial positions as samples, as in
    training) at ``vcreg_layers``, and ``<layer>/<name>_error``, the block loss of each
    ρSIM/SIM regularizer ``<name>`` of a ``RegularizedModel`` at each of its blocks
    (its ``block_loss`` under ``no_grad``, unweighted, with a fixed seed for the token
    sampling so that epochs compare and the training RNG is untouched).

The metric reads these fields from the data samples, so nothing else is shared between
hook and metric, and it works under DDP (the metric gathers its results as usual).
All hooks are removed at the end of each val/test epoch; training is never touched.
Layer names are relative to the architecture (as everywhere in sslreg).
"""
from contextlib import ExitStack
from functools import partial
from typing import Dict, List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.structures import BaseDataElement

from ..architecture import architecture_of, regularizers_of
from ..losses.vcreg import vcreg_terms
from ..regularizers.taps import (LayerRecorder, Patterns, Record, channel_dim_for,
                                 first_tensor, resolve_layers)

__all__ = ['LayerFeatureHook', 'pool_features']


def _tensors(output) -> List[torch.Tensor]:
    if torch.is_tensor(output):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for t in output if torch.is_tensor(t) and t.dim() >= 2]
    return []


def pool_features(output) -> torch.Tensor:
    """``(N, C)`` from a layer output: ``(N, C, H, W)`` maps averaged over space,
    ``(N, L, C)`` tokens over tokens, ``(N, C)`` as is; a tuple/list gives its last
    tensor (the deepest stage of a backbone)."""
    tensors = _tensors(output)
    if not tensors:
        raise TypeError(f'LayerFeatureHook: a layer returned {type(output).__name__} '
                        'holding no tensor')
    x = tensors[-1]
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 3:
        return x.mean(dim=1)
    if x.dim() == 2:
        return x
    raise ValueError(f'LayerFeatureHook: cannot pool an output of shape {tuple(x.shape)}')


def _rng_devices(x: torch.Tensor) -> list:
    return list(range(torch.cuda.device_count())) if x.is_cuda else []


@HOOKS.register_module()
class LayerFeatureHook(Hook):
    """Capture pooled features of named layers (and regularizer diagnostics) in
    val/test for :class:`FeatureCollapseMetric` (module docstring).

    Args:
        layers: layers whose pooled outputs the metric analyses (CDNV, NCC, ranks),
            e.g. ``['backbone.layer4', 'neck']``; paths/globs relative to the
            architecture.
        vcreg_layers: layers at which to report VCReg's variance and covariance terms
            (their full outputs, as VCReg sees them in training); None: none.
        vcreg_eps, vcreg_delta: VCReg's ``eps`` and ``delta`` for those terms.
        sim: report each ρSIM/SIM regularizer's block loss of a ``RegularizedModel``.
        seed: seed of ρSIM's token sampling in val (the training RNG is restored).
    """

    priority = 'NORMAL'

    def __init__(self, layers: Optional[Patterns] = None,
                 vcreg_layers: Optional[Patterns] = None, vcreg_eps: float = 1e-4,
                 vcreg_delta: Optional[float] = None, sim: bool = True, seed: int = 0):
        if layers is None and vcreg_layers is None and not sim:
            raise ValueError('LayerFeatureHook has nothing to record: give layers, '
                             'vcreg_layers or sim=True')
        self.layers, self.vcreg_layers = layers, vcreg_layers
        self.vcreg_eps, self.vcreg_delta = vcreg_eps, vcreg_delta
        self.sim, self.seed = sim, seed
        self._handles: list = []
        self._recorders: List[LayerRecorder] = []
        self._recording: Optional[ExitStack] = None
        self._features: Dict[str, torch.Tensor] = {}
        self._stats: Dict[str, float] = {}

    # ---------------------------------------------------------------- attach/detach
    def attach(self, model: torch.nn.Module):
        """Put the recorders and hooks on ``model`` (a model wrapper,
        ``RegularizedModel`` or plain model); returns the names of the captured layers."""
        self.detach()
        arch = architecture_of(model)
        self._feature_layers = resolve_layers(arch, self.layers) if self.layers else []
        self._vcreg_layers = resolve_layers(arch, self.vcreg_layers) if self.vcreg_layers else []
        self._sims = {}
        if self.sim:
            self._sims = {name: reg for name, reg in regularizers_of(model).items()
                          if hasattr(reg, 'block_loss') and reg.layer_names}
        names = set(self._feature_layers) | set(self._vcreg_layers)
        for reg in self._sims.values():
            names |= set(reg.layer_names)
        if not names:
            raise ValueError('LayerFeatureHook: nothing to capture (no layers, no '
                             'vcreg_layers, and no ρSIM/SIM regularizer in the model)')
        taps = sorted(set(self._feature_layers) | set(self._vcreg_layers))
        if taps:
            self._recorders.append(LayerRecorder(
                taps, keep=False, on_record=self._on_layer, owner='LayerFeatureHook'))
        for reg_name, reg in self._sims.items():  # each reads its blocks' inputs its way
            self._recorders.append(LayerRecorder(
                reg.layer_names, reg.input_index, keep=False,
                on_record=partial(self._on_sim_block, reg_name, reg),
                owner=type(reg).__name__))
        for recorder in self._recorders:
            recorder.attach(arch)
        self._handles += [arch.register_forward_pre_hook(self._open, with_kwargs=True),
                          arch.register_forward_hook(self._close, with_kwargs=True)]
        return sorted(names)

    def detach(self):
        self._end_recording()
        for recorder in self._recorders:
            recorder.detach()
        for handle in self._handles:
            handle.remove()
        self._handles, self._recorders = [], []

    def before_val_epoch(self, runner):
        self.attach(runner.model)

    def before_test_epoch(self, runner):
        self.attach(runner.model)

    def after_val_epoch(self, runner, metrics=None):
        self.detach()

    def after_test_epoch(self, runner, metrics=None):
        self.detach()

    # ---------------------------------------------------------------- recording
    def _open(self, module, args, kwargs):
        self._end_recording()  # a forward that raised never reached _close
        self._features, self._stats = {}, {}
        if kwargs.get('mode') == 'predict':
            self._recording = ExitStack()
            for recorder in self._recorders:
                self._recording.enter_context(recorder.recording())

    def _end_recording(self) -> bool:
        """Close the recording; whether one was open."""
        if self._recording is None:
            return False
        self._recording, stack = None, self._recording
        stack.close()
        return True

    @torch.no_grad()
    def _on_layer(self, record: Record):
        name, output = record.name, record.output
        if name in self._feature_layers:
            self._features[name] = pool_features(output).detach().float().cpu()
        if name in self._vcreg_layers:
            terms = []
            for t in _tensors(output):
                dim = channel_dim_for(t.dim())
                if t.numel() // t.shape[dim] >= 2:  # a covariance needs two samples
                    terms.append(vcreg_terms(t.detach(), self.vcreg_eps, self.vcreg_delta, dim))
            if terms:  # summed over the tensors of a tuple output, as VCReg does
                self._stats[f'{name}/vcreg_variance'] = sum(float(v) for v, _ in terms)
                self._stats[f'{name}/vcreg_covariance'] = sum(float(c) for _, c in terms)

    @torch.no_grad()
    def _on_sim_block(self, reg_name, reg, record: Record):
        out = first_tensor(record.output)
        with torch.random.fork_rng(devices=_rng_devices(out)):
            torch.manual_seed(self.seed)
            err = reg.block_loss(record.name, record.input, out)
        self._stats[f'{record.name}/{reg_name}_error'] = float(err)

    def _close(self, module, args, kwargs, output):
        if not self._end_recording():
            return None
        if not (isinstance(output, (list, tuple))
                and all(isinstance(ds, BaseDataElement) for ds in output)):
            raise TypeError('LayerFeatureHook: the predict forward returned '
                            f'{type(output).__name__}, not a list of data samples')
        for i, ds in enumerate(output):
            ds.set_field({k: f[i] for k, f in self._features.items()}, 'layer_features',
                         field_type='metainfo')
            ds.set_field(dict(self._stats), 'layer_stats', field_type='metainfo')
        self._features, self._stats = {}, {}
        return None

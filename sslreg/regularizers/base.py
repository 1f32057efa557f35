"""The regularizer contract: features in, loss terms (or gradients) out.

A :class:`Regularizer` is an ``nn.Module`` (its parameters, if any, live in the model,
so the optimizer and DDP see them). It gets features in one of two ways:

* **taps** -- ``layers`` names modules of a model; :meth:`Regularizer.attach` puts a
  :class:`~sslreg.regularizers.taps.LayerRecorder` on them and
  :meth:`Regularizer.on_block` sees ``(block input, block output)`` of every call it
  records (several per iteration when an SSL algorithm runs one backbone per view: each
  call counts, terms are summed);
* **in the model** -- a neck is itself a regularizer and calls :meth:`add_term`.

Either way it records only while *active*; :func:`collecting` switches a set of
regularizers on (and their recorders to recording) for one training forward,
:func:`probing` records the tapped layers' shapes in one forward, and
:func:`pop_terms` turns what they recorded into the entries of a loss dict:
``loss_<name>`` (summed into the total by MMEngine) and ``<name>_<stat>`` (logged
only: no 'loss' in the key).
"""
from contextlib import ExitStack, contextmanager
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from .taps import LayerRecorder, Patterns, Record, block_input, channel_dim_for, first_tensor

__all__ = ['Regularizer', 'collecting', 'probing', 'pop_terms', 'merge_terms',
           'find_regularizers', 'check_name', 'name_regularizers', 'RESERVED_NAMES',
           'channel_dim_for', 'first_tensor']

#: Regularizer names refused when declared: ``loss_task`` is where :func:`merge_terms`
#: puts the model's own bare ``loss``.
RESERVED_NAMES = ('task', )


class Regularizer(nn.Module):
    """Base class. Subclasses implement :meth:`on_block` (tap-based) or call
    :meth:`add_term` from their own forward (in-model).

    Args:
        layers: module paths/globs to tap, or None for an in-model regularizer.
        loss_weight: multiplies every loss term (a hook may schedule ``weight_scale``).
        input_index: which positional argument of a tapped module is its input
            (0 for most blocks; e.g. 1 for mmseg's ``UpConvBlock(skip, x)``).
    """

    #: Whether the module needs one probe forward (shapes) before it can be used.
    needs_probe = False

    def __init__(self, layers: Optional[Patterns] = None, loss_weight: float = 1.0,
                 input_index: int = 0):
        super().__init__()
        if loss_weight < 0:
            raise ValueError(f'loss_weight must be >= 0, got {loss_weight}')
        self.layers = layers
        self.loss_weight = float(loss_weight)
        self.weight_scale = 1.0
        self.input_index = int(input_index)
        self.layer_names: List[str] = []
        self.active = False
        self.probing = False
        self.probe_shapes: Dict[str, Tuple[torch.Size, torch.Size]] = {}
        self._terms: Dict[str, List[torch.Tensor]] = {}
        self._recorder: Optional[LayerRecorder] = None

    # ------------------------------------------------------------------ taps
    @property
    def weight(self) -> float:
        """The effective weight: ``loss_weight`` times the scheduled scale."""
        return self.loss_weight * self.weight_scale

    @property
    def recorder(self) -> Optional[LayerRecorder]:
        """The :class:`LayerRecorder` on the tapped layers (None before :meth:`attach`
        and for an in-model regularizer)."""
        return self._recorder

    def attach(self, model: nn.Module) -> List[str]:
        """Put a recorder on the modules of ``model`` named by ``layers``; returns
        their names."""
        if self.layers is None:
            return []
        self.detach()
        # keep=False: each call goes to on_block and nothing is held after it
        self._recorder = LayerRecorder(self.layers, self.input_index, keep=False,
                                       on_record=self._on_record, on_idle=self._on_idle,
                                       owner=type(self).__name__)
        self.layer_names = self._recorder.attach(model)
        return self.layer_names

    def detach(self):
        if self._recorder is not None:
            self._recorder.detach()
        self._recorder = None

    def _block_input(self, name: str, args: tuple) -> torch.Tensor:
        """The input the recorder reads from one call's ``args`` (:func:`block_input`)."""
        return block_input(args, self.input_index, name, type(self).__name__)

    def _on_record(self, record: Record):
        """A call recorded while collecting or probing."""
        if self.probing:
            self.probe_shapes[record.name] = (record.input.shape,
                                              first_tensor(record.output).shape)
            return None
        if not self.active:
            return None
        return self.on_block(record.name, record.input, record.output)

    def _on_idle(self, record: Record):
        """A call outside collecting/probing: nothing (VCReg's demean layer acts)."""
        return None

    def on_block(self, name: str, block_input: torch.Tensor, output):
        """One call of tapped block ``name``. Return None, or a replacement output."""
        raise NotImplementedError

    def build_from_probe(self):
        """Create parameters from ``self.probe_shapes`` (probing regularizers only)."""

    # ------------------------------------------------------------------ terms
    def add_term(self, key: str, value: torch.Tensor):
        """Record a term: ``'loss'`` becomes ``loss_<name>``, others ``<name>_<key>``."""
        self._terms.setdefault(key, []).append(value)

    def reduce_terms(self, terms: Dict[str, List[torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """Turn the recorded lists into one value per key (default: their sum)."""
        return {key: torch.stack(values).sum() for key, values in terms.items()}

    def pop_terms(self) -> Dict[str, torch.Tensor]:
        terms, self._terms = self._terms, {}
        return self.reduce_terms(terms) if terms else {}


def find_regularizers(model: nn.Module) -> Dict[str, Regularizer]:
    """Regularizer modules inside ``model`` (e.g. necks), keyed by their path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, Regularizer)}


def check_name(name, owner: str = 'regularizer') -> str:
    """Refuse a regularizer name whose loss-dict keys (``loss_<name>``, ``<name>_<stat>``)
    would hide or corrupt another entry; returns ``name``.

    ``'task'`` would give ``loss_task``, the key the model's own ``loss`` is renamed to
    (:func:`merge_terms`). A name containing ``'loss'`` would make every logged-only
    statistic ``<name>_<stat>`` a loss: MMEngine's ``parse_losses`` sums every key that
    contains ``'loss'``.
    """
    how = ('rename it in the config: the name is only the suffix of its loss key '
           "(loss_<name>), e.g. 'sim', 'vcreg', 'reg_task'")
    if not isinstance(name, str) or not name:
        raise ValueError(f'{owner} name {name!r}: a regularizer needs a non-empty string '
                         f'name; {how}')
    if name in RESERVED_NAMES:
        raise ValueError(f"{owner} name {name!r} is reserved: its loss key 'loss_{name}' is "
                         "where the model's own 'loss' is logged once regularizer terms are "
                         f'added, so it would replace the task loss; {how}')
    if 'loss' in name:
        raise ValueError(f"{owner} name {name!r} contains 'loss': MMEngine sums every "
                         "loss-dict key containing 'loss', so its logged-only statistics "
                         f"('{name}_<stat>') would be added to the total loss; {how}")
    return name


def name_regularizers(found: Dict[str, Regularizer],
                      taken: Iterable[str] = ()) -> Dict[str, Regularizer]:
    """Loss names of regularizers found in a model (:func:`find_regularizers`): a neck's
    own ``name``, else its path with dots as underscores. Each is checked
    (:func:`check_name`), and none may repeat a name in ``taken`` or another's."""
    named: Dict[str, Regularizer] = {}
    taken = set(taken)
    for path, reg in found.items():
        name = check_name(getattr(reg, 'name', None) or path.replace('.', '_'),
                          f'{type(reg).__name__} at {path!r}:')
        if name in taken or name in named:
            raise ValueError(f'{type(reg).__name__} at {path!r} has the loss name {name!r}, '
                             'which another regularizer of this model already has: their '
                             f"'loss_{name}' keys would overwrite each other; give it another "
                             'name (name=...)')
        named[name] = reg
    return named


def _recording(stack: ExitStack, regularizers: List[Regularizer]):
    for reg in regularizers:
        if reg.recorder is not None:
            stack.enter_context(reg.recorder.recording())


@contextmanager
def collecting(regularizers: Iterable[Regularizer]):
    """Regularizers record only inside this block (one training forward)."""
    regularizers = list(regularizers)
    for reg in regularizers:
        reg.pop_terms()  # drop anything left by an interrupted forward
        reg.active = True
    try:
        with ExitStack() as stack:
            _recording(stack, regularizers)
            yield regularizers
    finally:
        for reg in regularizers:
            reg.active = False


def pop_terms(named: Dict[str, Regularizer]) -> Dict[str, torch.Tensor]:
    """Loss-dict entries from the named regularizers' recorded terms."""
    out = {}
    for name, reg in named.items():
        for key, value in reg.pop_terms().items():
            out[f'loss_{name}' if key == 'loss' else f'{name}_{key}'] = value
    return out


def merge_terms(losses: dict, terms: Dict[str, torch.Tensor]) -> dict:
    """Add regularizer terms to a model's loss dict, in place.

    MMEngine's ``parse_losses`` logs the total under ``loss`` but a model's own ``loss``
    key then overwrites it in the log (the optimizer still gets the right total). When
    terms are added, the model's ``loss`` is renamed ``loss_task`` so the log shows the
    total as ``loss`` and the task part beside the regularizers.

    A term whose key is one of the model's keys, before or after that renaming, is an
    error naming both keys (it would replace the model's entry).
    """
    if not terms:
        return losses
    rename = 'loss' in losses and 'loss_task' not in losses
    # each of the model's keys as it will be in the merged dict -> as the model returned it
    model_keys = {('loss_task' if rename and key == 'loss' else key): key for key in losses}
    clashes = [(key, model_keys.get(key, key)) for key in terms
               if key in model_keys or key in losses]
    if clashes:
        what = '; '.join(
            f'regularizer key {mine!r} = the model\'s own {theirs!r}' if mine == theirs else
            f'regularizer key {mine!r} = the model\'s own {theirs!r} (renamed {mine!r} when '
            'regularizer terms are added)' for mine, theirs in clashes)
        raise ValueError(f'loss-dict keys clash: {what}. The regularizer would replace the '
                         "model's entry; rename the regularizer (its name <name> gives the "
                         "keys 'loss_<name>' and '<name>_<stat>')")
    if rename:
        losses['loss_task'] = losses.pop('loss')
    losses.update(terms)
    return losses


@contextmanager
def probing(regularizers: Iterable[Regularizer]):
    """Record the shapes of the tapped layers' inputs/outputs during one forward."""
    regularizers = list(regularizers)
    for reg in regularizers:
        reg.probing, reg.probe_shapes = True, {}
    try:
        with ExitStack() as stack:
            _recording(stack, regularizers)
            yield
    finally:
        for reg in regularizers:
            reg.probing = False
    for reg in regularizers:
        missing = [n for n in reg.layer_names if n not in reg.probe_shapes]
        if missing:
            raise RuntimeError(
                f'{type(reg).__name__}: layers {missing} were not called during the probe '
                'forward (model(dummy, mode="tensor")), so their widths are unknown. Tap '
                'layers that run in the forward pass, or give a probe_input that reaches them.')
        reg.build_from_probe()

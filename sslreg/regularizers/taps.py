"""Taps: find a model's layers by name or glob, and record what they see and return.

Globs follow module paths: ``*`` matches within one path component (no dots),
``**`` across components, ``?`` one character. So ``'backbone.layer*.*'`` is every
block of a ResNet (``backbone.layer1.0`` ...), not their convolutions.

:class:`LayerRecorder` is sslreg's one way of listening to layers (in the spirit of
mmrazor's recorders): it puts one forward hook on each named layer and, only while it
is *recording* (``with recorder:`` or ``with recorder.recording():``), keeps a
:class:`Record` ``(input, output)`` of every call, optionally hands each record to a
callback (which may replace the output), and can end the forward early once given
layers have run. The regularizers' taps, MCR's view tap, ``LayerFeatureHook`` and
SER's token-map reader are all recorders::

    recorder = LayerRecorder('backbone.layer*.*')
    recorder.attach(model)                     # -> ['backbone.layer1.0', ...]
    with recorder:                             # records only inside the block
        model(x)
    z_in, z_out = recorder.last('backbone.layer1.0')    # a Record: (input, output)
    with recorder.recording(stop_after='backbone.layer2.*'):
        model(x)                               # stops after layer2's blocks have run
    recorder.detach()
"""
import difflib
import re
from contextlib import contextmanager
from functools import lru_cache, partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import torch
from torch import nn

__all__ = ['Patterns', 'resolve_layers', 'channel_dim_for', 'block_input', 'first_tensor',
           'Record', 'LayerRecorder']

Patterns = Union[str, Sequence[str]]


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    parts = re.split(r'(\*\*|\*|\?)', pattern)
    table = {'**': '.*', '*': '[^.]*', '?': '[^.]'}
    return re.compile(''.join(table.get(p, re.escape(p)) for p in parts) + r'\Z')


def _as_list(patterns: Patterns) -> List[str]:
    if isinstance(patterns, str):
        return [patterns]
    patterns = list(patterns)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise TypeError(f'layers must be a module path/glob or a list of them, got {patterns!r}')
    return patterns


def _no_match_message(pattern: str, names: List[str], model: nn.Module) -> str:
    # Children of the deepest real module the pattern starts with, then the closest names.
    literal = re.split(r'[*?]', pattern)[0].rstrip('.')
    parts = literal.split('.') if literal else []
    modules = dict(model.named_modules())
    while parts and '.'.join(parts) not in modules:
        parts.pop()
    parent = '.'.join(parts)
    children = [f'{parent}.{c}' if parent else c for c, _ in modules[parent].named_children()]
    close = difflib.get_close_matches(pattern, names, n=8, cutoff=0.0)
    shown = list(dict.fromkeys(children[:12] + close))
    return (f'layers pattern {pattern!r} matches no module of {type(model).__name__}. '
            f"Real names near it: {', '.join(shown)}. ('*' stays within one path "
            f"component, '**' crosses dots.)")


def resolve_layers(model: nn.Module, patterns: Patterns) -> List[str]:
    """Module paths of ``model`` matched by ``patterns``, in model order, each once.

    Raises ValueError naming the nearby real module names for a pattern that
    matches nothing.
    """
    names = [name for name, _ in model.named_modules() if name]
    found = []
    for pattern in _as_list(patterns):
        regex = _glob_regex(pattern)
        matched = [n for n in names if regex.match(n)]
        if not matched:
            raise ValueError(_no_match_message(pattern, names, model))
        found.extend(matched)
    order = {n: i for i, n in enumerate(names)}
    return sorted(set(found), key=order.__getitem__)


# --------------------------------------------------------------------------- reading a call


def channel_dim_for(ndim: int) -> int:
    """Where the channels are: last for (N, L, C) token maps, 1 for (N, C, H, W) / (N, C)."""
    return -1 if ndim == 3 else 1


def _concat_channels(name: str, maps) -> torch.Tensor:
    dim = channel_dim_for(maps[0].dim())
    try:
        return torch.cat(list(maps), dim=dim)
    except RuntimeError as err:
        shapes = [tuple(t.shape) for t in maps]
        raise ValueError(f'layer {name!r} was called with a list of tensors of shapes {shapes}; '
                         'sslreg reads such a list as one input, concatenated along the '
                         f'channels, which needs equal sizes elsewhere ({err})') from err


def block_input(args: tuple, input_index: int = 0, name: str = '',
                owner: str = 'LayerRecorder') -> torch.Tensor:
    """The input of one call of a layer: positional argument ``input_index``; a list of
    tensors counts as their channel concatenation (a block called with a list of maps
    computes from it: DenseNet's dense layers). ``name``/``owner`` name the layer and
    the reader in the error raised when that argument holds no tensor."""
    x = args[input_index] if len(args) > input_index else None
    if isinstance(x, (list, tuple)) and x and all(torch.is_tensor(t) for t in x):
        x = x[0] if len(x) == 1 else _concat_channels(name, x)
    if not torch.is_tensor(x):
        raise ValueError(
            f'{owner}: layer {name!r} was called with {len(args)} positional argument(s); '
            f'input_index={input_index} does not name a tensor (or a list of tensors) '
            'among them. Set input_index to the position of the block input.')
    return x


def first_tensor(output) -> torch.Tensor:
    """The tensor a block returned (the first one when it returns a tuple/list)."""
    if torch.is_tensor(output):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if torch.is_tensor(item):
                return item
    raise TypeError(f'a tapped block returned {type(output).__name__} holding no tensor')


_UNREAD = object()


class Record:
    """One call of a recorded layer: its ``name``, ``module``, positional ``args`` and
    ``output`` (as the layer returned it), and its :attr:`input`.

    Unpacks as ``input, output = record``.
    """

    __slots__ = ('name', 'module', 'args', 'output', 'input_index', 'owner', '_input')

    def __init__(self, name: str, module: nn.Module, args: tuple, output: Any,
                 input_index: int = 0, owner: str = 'LayerRecorder'):
        self.name, self.module, self.args, self.output = name, module, args, output
        self.input_index, self.owner = input_index, owner
        self._input = _UNREAD

    @property
    def input(self) -> torch.Tensor:
        """:func:`block_input` of the call, read when first asked for (a call whose
        input is never read costs nothing and cannot fail on it)."""
        if self._input is _UNREAD:
            self._input = block_input(self.args, self.input_index, self.name, self.owner)
        return self._input

    def __iter__(self) -> Iterator:
        return iter((self.input, self.output))

    def __repr__(self):
        return f'Record({self.name!r}, output={type(self.output).__name__})'


class _StopForward(Exception):
    """Raised by a recorder's hook to end the forward once its ``stop_after`` layers
    have run; caught by that recorder's own context, and only by it."""

    def __init__(self, recorder: 'LayerRecorder'):
        super().__init__(f'forward stopped after {sorted(recorder._stop_names)}')
        self.recorder = recorder


Callback = Callable[[Record], Any]


class LayerRecorder:
    """Records ``(input, output)`` of every call of the named layers, while recording.

    Args:
        layers: module paths/globs (:func:`resolve_layers`, against the model given to
            :meth:`attach`); None: no layer (a recorder that records nothing).
        input_index: which positional argument of a layer is its input
            (:func:`block_input`; 0 for most blocks, 1 for mmseg's ``UpConvBlock(skip,
            x)``).
        stop_after: default of :meth:`recording`'s ``stop_after``.
        keep: keep the records in :attr:`records` (False: only hand them to
            ``on_record``; nothing is held after the call).
        on_record: called with each :class:`Record` while recording; a return value
            other than None replaces the layer's output.
        on_idle: called with each :class:`Record` outside recording, likewise (for a
            tap that acts as part of the network whether or not anything records:
            VCReg's demean layer). None: outside recording the hooks do nothing.
        owner: who reads the inputs, named in :func:`block_input`'s error.

    After a recording, :attr:`records` (``{layer: [Record, ...]}``, one per call, in
    call order), :meth:`outputs`, :meth:`inputs` and :meth:`last` read what it saw,
    until the next recording or :meth:`clear`.
    """

    def __init__(self, layers: Optional[Patterns] = None, input_index: int = 0, *,
                 stop_after: Optional[Patterns] = None, keep: bool = True,
                 on_record: Optional[Callback] = None, on_idle: Optional[Callback] = None,
                 owner: str = 'LayerRecorder'):
        self.layers, self.input_index = layers, int(input_index)
        self.stop_after, self.keep = stop_after, keep
        self.on_record, self.on_idle, self.owner = on_record, on_idle, owner
        self.names: List[str] = []
        self.records: Dict[str, List[Record]] = {}
        self.active = False
        self._handles: list = []
        self._stop_names: frozenset = frozenset()
        self._pending: Optional[set] = None

    # ------------------------------------------------------------------ hooks
    def attach(self, model: nn.Module) -> List[str]:
        """Hook the layers of ``model`` named by ``layers``; returns their names."""
        self.detach()
        self.names = [] if self.layers is None else resolve_layers(model, self.layers)
        modules = dict(model.named_modules())
        for name in self.names:
            # Names, not modules, are kept: holding a model's modules as attributes of a
            # module (a regularizer) would register them a second time.
            self._handles.append(modules[name].register_forward_hook(partial(self._hook, name)))
        self.records = {name: [] for name in self.names}
        return list(self.names)

    def detach(self):
        """Remove the hooks (the records stay readable)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, name, module, args, output):
        if not self.active:
            if self.on_idle is None:
                return None
            return self.on_idle(Record(name, module, args, output, self.input_index, self.owner))
        record = Record(name, module, args, output, self.input_index, self.owner)
        if self.keep:
            self.records[name].append(record)
        result = self.on_record(record) if self.on_record is not None else None
        if self._pending is not None:
            self._pending.discard(name)
            if not self._pending:
                raise _StopForward(self)
        return result

    # ------------------------------------------------------------------ recording
    def _stop_set(self, stop_after: Optional[Patterns]) -> Optional[set]:
        if stop_after is None:
            return None
        names = set()
        for pattern in _as_list(stop_after):
            matched = {n for n in self.names if _glob_regex(pattern).match(n)}
            if not matched:
                raise ValueError(f'{self.owner}: stop_after={pattern!r} names none of the '
                                 f'recorded layers {self.names}')
            names |= matched
        return names

    def _start(self, stop_after: Optional[Patterns]):
        self._pending = self._stop_set(stop_after)
        self._stop_names = frozenset(self._pending or ())
        self.records = {name: [] for name in self.names}
        self.active = True

    def _stop(self):
        self.active, self._pending = False, None

    @contextmanager
    def recording(self, stop_after: Optional[Patterns] = None):
        """Record inside this block; yields :attr:`records`. ``stop_after``: layer
        names/globs among the recorded ones: once each has run, the forward is ended
        (the rest of the ``with`` body is skipped, and the block exits normally)."""
        self._start(self.stop_after if stop_after is None else stop_after)
        try:
            yield self.records
        except _StopForward as stop:
            if stop.recorder is not self:
                raise
        finally:
            self._stop()

    def __enter__(self) -> 'LayerRecorder':
        self._start(self.stop_after)
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        self._stop()
        return isinstance(exc, _StopForward) and exc.recorder is self

    # ------------------------------------------------------------------ reading
    def outputs(self, name: str) -> list:
        """The outputs of every recorded call of layer ``name``."""
        return [r.output for r in self.records[name]]

    def inputs(self, name: str) -> List[torch.Tensor]:
        """The inputs (:func:`block_input`) of every recorded call of layer ``name``."""
        return [r.input for r in self.records[name]]

    def last(self, name: str) -> Record:
        """The last recorded call of layer ``name``."""
        if not self.records.get(name):
            raise KeyError(f'{self.owner}: layer {name!r} was not called while recording '
                           f'(recorded layers: {self.names})')
        return self.records[name][-1]

    def clear(self):
        """Drop the records (the hooks stay)."""
        self.records = {name: [] for name in self.names}

"""Taps: find a model's layers by name or glob, and listen to their calls.

Globs follow module paths: ``*`` matches within one path component (no dots),
``**`` across components, ``?`` one character. So ``'backbone.layer*.*'`` is every
block of a ResNet (``backbone.layer1.0`` ...), not their convolutions.
"""
import difflib
import re
from functools import lru_cache
from typing import List, Sequence, Union

from torch import nn

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

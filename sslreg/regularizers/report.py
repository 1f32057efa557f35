"""What a run says about its regularizers: the layers each acts on (at the start) and
how hard it pulls (after the first backward), one line per regularizer.

:func:`report_lines` is the one report; ``RegularizedModel`` and ``RegularizerHook``
log its lines through MMEngine's logger, a plain-PyTorch loop can print them::

    for line in report_lines(regs, 'layers', model):
        print(line)     # Regularizer sim (RhoSIM) on 6 layers: layer1.0 ... layer3.1
    ...                 # one training step
    for line in report_lines(regs, 'grad_share'):
        print(line)     # Regularizer gradient share after the first training ...
"""
from typing import Dict, Iterable, List, Optional

from torch import nn

__all__ = ['compact_names', 'report_lines', 'grad_share_ready', 'STAGES']

STAGES = ('layers', 'grad_share')
GRAD_SHARE_HEAD = 'Regularizer gradient share after the first training iteration'


def compact_names(names: Iterable[str], listed: int = 4) -> str:
    """``'a, b, c'`` for up to ``listed`` names, else ``'first … last'`` (the count is
    given next to it by the caller)."""
    names = list(names)
    if len(names) <= listed:
        return ', '.join(names)
    return f'{names[0]} … {names[-1]}'


def _plural(n: int, word: str) -> str:
    return f'{n} {word}' + ('' if n == 1 else 's')


def _paths(model: Optional[nn.Module]) -> Dict[int, str]:
    if model is None:
        return {}
    return {id(m): path for path, m in model.named_modules()}


def _layers_line(name: str, reg: nn.Module, paths: Dict[int, str]) -> str:
    kind = type(reg).__name__
    layers = list(getattr(reg, 'layer_names', None) or [])
    if layers:
        return (f'Regularizer {name} ({kind}) on {_plural(len(layers), "layer")}: '
                f'{compact_names(layers)}')
    # in the model (a neck): what flows through its position
    where = paths.get(id(reg))
    where = f' at {where!r}' if where else ''
    blocks = getattr(reg, 'num_blocks', None)  # SIMNeck: pairs of consecutive levels
    extra = f', {_plural(blocks, "level pair")}' if blocks else ''
    return f'Regularizer {name} ({kind}) in the model{where}{extra}'


def _options(reg: nn.Module) -> str:
    opts = [f'{key}={getattr(reg, key)}' for key in ('mode', 'cov_scale', 'rho')
            if hasattr(reg, key)]
    return ', '.join([type(reg).__name__] + opts)


def _measures(reg: nn.Module) -> bool:
    return bool(getattr(reg, 'measures_grad_share', False))


def _grad_share_line(name: str, reg: nn.Module) -> str:
    if not _measures(reg):
        return f'{GRAD_SHARE_HEAD}, {name}: not measured ({type(reg).__name__})'
    norms = reg.last_grad_norms
    if norms is None:
        return f'{GRAD_SHARE_HEAD}, {name}: no gradient this iteration ({_options(reg)})'
    g_reg, g_down = norms
    shares = reg.last_grad_shares
    return (f'{GRAD_SHARE_HEAD}, {name}: {reg.last_grad_share:.4g} = ||g_{name}|| / '
            f'||g_downstream|| at the {_plural(reg.last_grad_count, "regularized tensor")} '
            f'(|g_{name}|={g_reg:.4g}, |g_downstream|={g_down:.4g}; per tensor: most '
            f'downstream {shares[0]:.4g}, max {max(shares):.4g}; {_options(reg)})')


def report_lines(named: Dict[str, nn.Module], stage: str,
                 model: Optional[nn.Module] = None) -> List[str]:
    """One line per regularizer of ``named`` (loss name -> module).

    ``stage='layers'``: its type, how many layers it taps and a compact list of them
    (``backbone.layer1.0 … backbone.layer4.1``), or, for one inside the model (a neck),
    its module path in ``model``. ``stage='grad_share'``: after a backward, its gradient
    share ``||g_reg|| / ||g_downstream||`` at the tensors it acts on
    (:class:`~sslreg.regularizers.grad_share.GradShareStats`), or why there is none.
    """
    if stage not in STAGES:
        raise ValueError(f'stage must be one of {STAGES}, got {stage!r}')
    if stage == 'layers':
        paths = _paths(model)
        return [_layers_line(name, reg, paths) for name, reg in named.items()]
    return [_grad_share_line(name, reg) for name, reg in named.items()]


def grad_share_ready(named: Dict[str, nn.Module]) -> bool:
    """Whether the gradient-share report has something to say: one of the regularizers
    that measure it has seen a backward, or none of them measures it
    (``measures_grad_share``; SIMNeck does not)."""
    measuring = [reg for reg in named.values() if _measures(reg)]
    return not measuring or any(reg.last_grad_norms is not None for reg in measuring)

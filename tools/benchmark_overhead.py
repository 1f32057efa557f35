"""Training-step overhead of sslreg's regularizers: time, memory and FLOPs vs none.

    python tools/benchmark_overhead.py                       # the default rows, below
    python tools/benchmark_overhead.py --backbones resnet50 --variants vcreg-fast,vcreg-explicit

For each backbone, every variant (the plain model and the model with one regularizer
attached the way users attach it: ``RegularizedModel`` with a ``regularizers`` config)
is built in this one process, from the same seed, and runs the same training step on
the same synthetic batch: ``model(x, data_samples, mode='loss')``, backward of
``sum(v for k, v in losses.items() if 'loss' in k)`` (MMEngine's rule), with
``model.train()``.

Method
------
* **Interleaved timing.** The variants of one backbone run round-robin (A, B, C, A, B,
  C, ...), first ``--warmup`` rounds untimed, then ``--repeats`` timed rounds. A slow
  spell of the machine (another process, thermal throttling, the allocator growing)
  then hits every variant alike instead of whichever one happened to run during it.
* **Medians.** Each variant's step time is the median of its timed repeats; the time
  ratio is that median over the median of the baseline (``none``) of the same
  backbone. The JSON also keeps every sample and the median of the per-round ratios.
* **Memory.** With CUDA: ``torch.cuda.max_memory_allocated`` over one step. On CPU
  there is no allocator peak counter, so the column measures what dominates the
  peak of a training step: the bytes of the unique storages autograd saves for
  backward during the forward (``saved_tensors_hooks``, deduplicated by storage
  pointer, parameters left out; all of them are alive together when backward starts),
  plus parameter and gradient bytes. It does not see short-lived temporaries, hence
  the column's name ("saved-act+param mem").
* **FLOPs.** ``torch.utils.flop_counter.FlopCounterMode`` over one forward+backward
  step (matrix products and convolutions, which is where the arithmetic is). The FLOP
  ratio is the arithmetic floor of the time ratio: a time ratio close to it means the
  implementation adds little beyond the arithmetic it must do.

Memory and FLOPs are measured on separate, untimed steps, so their hooks never touch
the timings.

Rows
----
Variants are a registry (:data:`VARIANTS`): a name, the regularizers config it adds for
a backbone, and the backbones it runs on by default. Without ``--variants`` the rows
are the default pairs (VCReg fast / explicit on every block of ResNet-50 and ViT-B/32,
ρSIM ρ=0.2 on every block of ResNet-18 and ResNet-50, and, when sslreg's VCReg has a
``sample_ratio``, VCReg fast with statistics from 20% of the positions on ResNet-50 and
ViT-B/32); with ``--variants`` every named variant runs on every named backbone. The
baseline is always added. A later regularizer adds a row by adding a :class:`Variant`;
one may bring its own architecture and baseline (e.g. an SSL algorithm with and
without SER; one whose inputs differ, such as two views, also needs its own batch in
:func:`synthetic_batch`).
"""
import argparse
import inspect
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
import sslreg  # noqa: E402,F401  (registers RegularizedModel, VCReg, RhoSIM)

StepFn = Callable[[], None]


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Backbone:
    """A classifier to regularize: its model dict for an input size, and the glob of
    every one of its blocks."""
    architecture: Callable[[int], dict]
    blocks: str


def resnet_classifier(depth: int, width: int) -> Callable[[int], dict]:
    def build(size: int) -> dict:
        return dict(type='ImageClassifier',
                    backbone=dict(type='ResNet', depth=depth),
                    neck=dict(type='GlobalAveragePooling'),
                    head=dict(type='LinearClsHead', num_classes=1000, in_channels=width))
    return build


def vit_b32_classifier(size: int) -> dict:
    return dict(type='ImageClassifier',
                backbone=dict(type='VisionTransformer', arch='b', patch_size=32, img_size=size),
                neck=None,
                head=dict(type='VisionTransformerClsHead', num_classes=1000, in_channels=768))


BACKBONES: Dict[str, Backbone] = {
    'resnet18': Backbone(resnet_classifier(18, 512), 'backbone.layer*.*'),
    'resnet50': Backbone(resnet_classifier(50, 2048), 'backbone.layer*.*'),
    'vit-b32': Backbone(vit_b32_classifier, 'backbone.layers.*'),
}


@dataclass(frozen=True)
class Variant:
    """One row per backbone: the ``regularizers`` config it attaches.

    Args:
        regularizers: backbone -> the ``regularizers`` dict of ``RegularizedModel``.
        backbones: the backbones it runs on when ``--variants`` is not given.
        baseline: the variant its ratios are taken against.
        architecture: (backbone, size) -> model dict, to replace the backbone's
            classifier (e.g. an SSL algorithm); None keeps the classifier.
    """
    regularizers: Callable[[Backbone], dict]
    backbones: Tuple[str, ...]
    baseline: str = 'none'
    architecture: Optional[Callable[[Backbone, int], dict]] = None


def vcreg(mode: str, **extra) -> Callable[[Backbone], dict]:
    return lambda bb: dict(vcreg=dict(type='VCReg', layers=bb.blocks, mode=mode, **extra))


def rhosim(bb: Backbone) -> dict:
    return dict(rhosim=dict(type='RhoSIM', layers=bb.blocks, rho=0.2, dim=128, hidden=256,
                            loss_weight=5e-3))


VARIANTS: Dict[str, Variant] = {
    'none': Variant(lambda bb: {}, tuple(BACKBONES), baseline='none'),
    'vcreg-fast': Variant(vcreg('fast'), ('resnet50', 'vit-b32')),
    'vcreg-explicit': Variant(vcreg('explicit'), ('resnet50', 'vit-b32')),
    'rhosim': Variant(rhosim, ('resnet18', 'resnet50')),
}

#: Names VCReg might give a "statistics from a fraction of positions" option.
SAMPLING_PARAMS = ('sample_ratio', 'sample_fraction', 'sample_rate')
#: At 0.2 the exact form's ResNet-50 arithmetic (≈1.54× the plain step) falls to ≈1.1×.
SAMPLED_FRACTION = 0.2


def vcreg_sampling_param() -> Optional[str]:
    """The sampling argument of sslreg's VCReg, or None if it has none."""
    from sslreg.regularizers.vcreg import VCReg
    params = inspect.signature(VCReg.__init__).parameters
    return next((p for p in SAMPLING_PARAMS if p in params), None)


# Only when sslreg's VCReg offers sampled statistics.
_SAMPLING = vcreg_sampling_param()
if _SAMPLING is not None:
    VARIANTS['vcreg-fast-sampled'] = Variant(vcreg('fast', **{_SAMPLING: SAMPLED_FRACTION}),
                                             ('resnet50', 'vit-b32'))


def rows_to_run(backbones: Sequence[str],
                variants: Optional[Sequence[str]]) -> Dict[str, List[str]]:
    """backbone -> its variant names, baselines first. ``variants=None``: the default
    pairs of the registry; otherwise every named variant on every backbone."""
    plan = {}
    for bb in backbones:
        names = [v for v in VARIANTS if bb in VARIANTS[v].backbones] if variants is None \
            else list(variants)
        baselines = [VARIANTS[v].baseline for v in names]
        plan[bb] = list(dict.fromkeys(baselines + names))
    return plan


# --------------------------------------------------------------------------- models and steps


def build_model(backbone: str, variant: str, size: int, seed: int, device: str):
    """``RegularizedModel`` of one row in train mode; the same seed gives every variant
    of a backbone the same architecture weights."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    bb, var = BACKBONES[backbone], VARIANTS[variant]
    architecture = var.architecture(bb, size) if var.architecture else bb.architecture(size)
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='RegularizedModel', architecture=architecture,
                              probe_input=(1, 3, size, size),
                              regularizers=var.regularizers(bb)))
    return model.to(device).train()


def synthetic_batch(batch: int, size: int, seed: int, device: str):
    """Random images and labels, the same for every variant."""
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, 3, size, size, generator=gen).to(device)
    labels = torch.randint(0, 1000, (batch,), generator=gen).tolist()
    return inputs, [DataSample().set_gt_label(label) for label in labels]


def make_step(model, inputs, data_samples) -> StepFn:
    """One training step: forward in loss mode, backward of MMEngine's total loss."""
    def step():
        model.zero_grad(set_to_none=True)
        losses = model(inputs, data_samples, mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
        if inputs.is_cuda:
            torch.cuda.synchronize()
    return step


# --------------------------------------------------------------------------- measurements


def interleaved_times(steps: Sequence[Tuple[str, StepFn]], repeats: int, warmup: int,
                      clock: Callable[[], float] = time.perf_counter) -> Dict[str, List[float]]:
    """Run ``steps`` round-robin, ``warmup`` untimed rounds then ``repeats`` timed ones;
    returns name -> the seconds of each timed call, in order."""
    for _ in range(warmup):
        for _, step in steps:
            step()
    times = {name: [] for name, _ in steps}
    for _ in range(repeats):
        for name, step in steps:
            start = clock()
            step()
            times[name].append(clock() - start)
    return times


def _storage_key(t: torch.Tensor) -> Tuple[int, int]:
    try:
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError):  # tensors without a plain storage
        return id(t), t.numel() * t.element_size()


def saved_activation_bytes(model, step: StepFn) -> int:
    """Bytes of the unique storages saved for backward during one step, parameters
    excluded (they are counted by :func:`param_and_grad_bytes`)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        ptr, nbytes = _storage_key(t)
        if ptr not in params:
            saved[ptr] = max(saved.get(ptr, 0), nbytes)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(saved.values())


def param_and_grad_bytes(model) -> int:
    """Parameters plus the gradients the last step left (regularizer heads included)."""
    total = 0
    for p in model.parameters():
        total += p.numel() * p.element_size()
        if p.grad is not None:
            total += p.grad.numel() * p.grad.element_size()
    return total


def memory_bytes(model, step: StepFn, device: str) -> int:
    """Peak allocated bytes of one step (CUDA) or saved activations + params + grads (CPU)."""
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
        step()
        return torch.cuda.max_memory_allocated()
    return saved_activation_bytes(model, step) + param_and_grad_bytes(model)


def memory_kind(device: str) -> str:
    return 'cuda max_memory_allocated' if device.startswith('cuda') \
        else 'saved activations + params + grads'


def step_flops(step: StepFn) -> int:
    """Matrix-product and convolution FLOPs of one forward+backward step."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


# --------------------------------------------------------------------------- one backbone


def measure_backbone(backbone: str, variants: Sequence[str], args, device: str) -> List[dict]:
    """Build every variant of ``backbone``, measure it, time them interleaved; one
    row per variant, ratios against each variant's baseline."""
    inputs, data_samples = synthetic_batch(args.batch, args.size, args.seed, device)
    steps, rows = [], {}
    for variant in variants:
        log(f'{backbone} / {variant}: build, FLOPs, memory')
        model = build_model(backbone, variant, args.size, args.seed, device)
        step = make_step(model, inputs, data_samples)
        rows[variant] = dict(backbone=backbone, variant=variant, batch=args.batch,
                             size=args.size, flops=step_flops(step),
                             memory_bytes=memory_bytes(model, step, device))
        steps.append((variant, step))
    log(f'{backbone}: timing {len(steps)} variants interleaved, '
        f'{args.warmup} warm-up + {args.repeats} timed rounds')
    times = interleaved_times(steps, args.repeats, args.warmup)
    for variant, row in rows.items():
        row.update(times_s=times[variant], median_s=statistics.median(times[variant]))
    for variant, row in rows.items():
        add_ratios(row, rows[VARIANTS[variant].baseline])
    return list(rows.values())


def add_ratios(row: dict, base: dict):
    row['baseline'] = base['variant']
    row['time_ratio'] = row['median_s'] / base['median_s']
    row['time_ratio_paired_median'] = statistics.median(
        t / b for t, b in zip(row['times_s'], base['times_s']))
    row['memory_ratio'] = row['memory_bytes'] / base['memory_bytes']
    row['flop_ratio'] = row['flops'] / base['flops']


# --------------------------------------------------------------------------- output


COLUMNS = (('backbone', 'backbone', '{}'), ('variant', 'variant', '{}'),
           ('batch', 'batch', '{}'), ('size', 'input', '{0}x{0}'),
           ('median_s', 'median step (s)', '{:.3f}'), ('time_ratio', 'time × none', '{:.3f}'),
           ('memory_ratio', '{mem} × none', '{:.3f}'),
           ('flop_ratio', 'FLOP × none (fwd+bwd)', '{:.3f}'))


def markdown_table(rows: List[dict], device: str) -> str:
    mem = 'peak mem' if device.startswith('cuda') else 'saved-act+param mem'
    header = [title.format(mem=mem) for _, title, _ in COLUMNS]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in rows:
        lines.append('| ' + ' | '.join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + ' |')
    return '\n'.join(lines)


def run_info(args, device: str) -> dict:
    return dict(device=device, torch=torch.__version__, threads=torch.get_num_threads(),
                cpu_count=os.cpu_count(), platform=platform.platform(),
                memory_measure=memory_kind(device),
                loadavg=os.getloadavg() if hasattr(os, 'getloadavg') else None,
                batch=args.batch, size=args.size, repeats=args.repeats, warmup=args.warmup,
                seed=args.seed)


def log(message: str):
    print(f'[benchmark_overhead] {message}', file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- CLI


def csv_names(choices: Sequence[str]) -> Callable[[str], List[str]]:
    def parse(text: str) -> List[str]:
        names = [n.strip() for n in text.split(',') if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f'unknown {unknown or text!r}; choose from {", ".join(choices)}')
        return names
    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Step time, memory and FLOPs of regularized models vs the plain model')
    parser.add_argument('--backbones', type=csv_names(list(BACKBONES)), default=list(BACKBONES),
                        help=f'comma-separated, from {",".join(BACKBONES)} (default: all)')
    parser.add_argument('--variants', type=csv_names(list(VARIANTS)), default=None,
                        help=f'comma-separated, from {",".join(VARIANTS)}; each runs on every '
                        'backbone (default: the registry\'s default pairs)')
    parser.add_argument('--batch', type=int, default=8, help='batch size (default: 8)')
    parser.add_argument('--size', type=int, default=224,
                        help='input height and width (default: 224)')
    parser.add_argument('--repeats', type=int, default=7, help='timed rounds (default: 7)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed rounds before them (default: 2)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: torch\'s own)')
    parser.add_argument('--seed', type=int, default=0, help='weights and inputs (default: 0)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='default: cuda when available, else cpu')
    parser.add_argument('--out', default='work_dirs/benchmark/overhead.json',
                        help='JSON output (default: work_dirs/benchmark/overhead.json)')
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.batch < 1 or args.size < 1:
        parser.error('--repeats, --batch and --size must be >= 1, --warmup >= 0')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()  # restored: main() may run inside another program
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        info = run_info(args, args.device)
        rows = []
        for backbone, variants in rows_to_run(args.backbones, args.variants).items():
            rows += measure_backbone(backbone, variants, args, args.device)
    finally:
        torch.set_num_threads(threads)
    info['loadavg_after'] = os.getloadavg() if hasattr(os, 'getloadavg') else None
    result = dict(info=info, rows=rows)
    print(markdown_table(rows, args.device))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    log(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()

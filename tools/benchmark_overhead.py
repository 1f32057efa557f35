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
Variants are a registry (:data:`VARIANTS`). A *classifier* variant is the
``regularizers`` config it adds to a backbone's classifier (``RegularizedModel``); its
baseline is the plain classifier (``none``) and one step is forward in loss mode plus
backward, as above. An *algorithm* variant (:class:`Algorithm`) is an SSL algorithm
built from a config of this repository exactly as ``tools/train.py`` builds it (its
``model``, ``data_preprocessor`` and ``optim_wrapper``); one step is MMEngine's
``model.train_step(data, optim_wrapper)`` on uint8 views, so preprocessing, the
optimizer step and (MCR) the second optimizer are in the time. Its baseline is the
algorithm it regularizes, from the same config or the stock mmpretrain config the
config inherits, with the same backbone, batch and input size.

Default rows (without ``--variants``): VCReg fast / explicit on every block of
ResNet-50 and ViT-B/32, VCReg fast with statistics from 20% of the positions on both,
ρSIM ρ=0.2 on every block of ResNet-18 and ResNet-50 (batch ``--batch`` at ``--size``);
SER on MoCo v3 ViT-S/16 (``vit-s16-ssl``: batch 16 at 224, 3 views); MCR-SimCLR with
each meta-gradient (second order, DARTS finite difference, first order) over SimCLR
and SidAE over SimSiam, ResNet-18 CIFAR (``r18-cifar-ssl``: batch 64 at 32). With
``--variants``, each named variant runs on every named backbone it applies to (a
classifier variant on every classifier backbone, an algorithm variant on its own
group). The baseline is always added.

Arithmetic floors of the algorithm rows (the FLOP column shows them). SER keeps two
views per sample (the equivariance sub-batch's views are geometric transforms of one
crop, at 0.7-1.3x the area) and adds the patch-token projector and the patch-wise
NT-Xent; LateClsViT's first k blocks run without the CLS token, so the FLOP ratio is
close to 1. MCR's exact second-order meta-gradient needs, besides SimCLR's step, a
forward+backward at the virtual weights (+1x by itself) and a vector-Jacobian product
through the first gradient (a double backward); so it cannot come near 2x SimCLR's
step whatever the implementation. ``meta_interval=k`` divides the extra cost by k; the
finite-difference form replaces the double backward by two forwards. Each algorithm
row also records the names its ``train_step`` logged (``logged``), which show the
regularizer's terms were computed.
"""
import argparse
import ast
import dataclasses
import json
import os
import os.path as osp
import platform
import random
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = osp.join(osp.dirname(osp.abspath(__file__)), '..')

sys.path.insert(0, ROOT)
import sslreg  # noqa: E402,F401  (registers RegularizedModel, VCReg, RhoSIM)

StepFn = Callable[[], None]


# --------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
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


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """An SSL algorithm as users train it: built from ``config`` (a path under the
    repository; with ``inherit``, the stock config it inherits) after ``edit(cfg)``; one
    step is ``model.train_step`` on ``views`` uint8 views of ``batch`` images of
    ``size``; each data sample gets ``metainfo(rng)``."""
    config: str
    views: int
    batch: int
    size: int
    inherit: bool = False
    edit: Optional[Callable[[object], None]] = None
    metainfo: Optional[Callable[[random.Random], dict]] = None


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row per backbone (or algorithm group).

    Args:
        regularizers: backbone -> the ``regularizers`` dict of ``RegularizedModel``
            (classifier variants).
        backbones: the backbones or groups it runs on when ``--variants`` is not given.
        baseline: the variant its ratios are taken against.
        algorithm: an SSL algorithm row instead of a regularized classifier.
    """
    regularizers: Callable[[Backbone], dict] = lambda bb: {}
    backbones: Tuple[str, ...] = ()
    baseline: str = 'none'
    algorithm: Optional[Algorithm] = None


def vcreg(mode: str, **extra) -> Callable[[Backbone], dict]:
    return lambda bb: dict(vcreg=dict(type='VCReg', layers=bb.blocks, mode=mode, **extra))


def rhosim(**options) -> Callable[[Backbone], dict]:
    """ρSIM at rho=0.2 on every block; ``options`` on top of the preset (default: the
    CUB configs' form, preset 'paper')."""
    return lambda bb: dict(rhosim=dict(type='RhoSIM', layers=bb.blocks, rho=0.2,
                                       loss_weight=5e-3, **options))


#: At 0.2 the exact form's ResNet-50 arithmetic (≈1.54× the plain step) falls to ≈1.1×.
SAMPLED_FRACTION = 0.2

# The algorithm rows' configs. The baselines come from the same files (or the stock
# mmpretrain config they inherit), so backbone, projector, batch and size are the same.
SER_MOCOV3 = 'configs/ser/ser-mocov3_vit-small-p16_8xb256-coslr-100e_in1k.py'
MCR_SIMCLR = 'configs/mcr/mcr_simclr_r18_cifar10.py'
SIDAE = 'configs/sidae/sidae_r18_cifar10.py'


def ser_metainfo(rng: random.Random) -> dict:
    from sslreg.models.ser import META_G1, META_G2
    from sslreg.geometry import sample_element
    return {META_G1: sample_element(rng=rng).to_tuple(),
            META_G2: sample_element(rng=rng).to_tuple()}


def inherited_base(path: str) -> str:
    """The ``_base_`` of a config file (SER's baseline is the MoCo v3 config it edits)."""
    with open(osp.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    base = next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == '_base_')
    return base if isinstance(base, str) else base[0]


def mcr_edit(**kwargs) -> Callable[[object], None]:
    def edit(cfg):
        cfg.model.update(kwargs)
    return edit


def mcr_base_algorithm(cfg):
    """SimCLR alone: MCR's wrapped algorithm and its 'base' optimizer."""
    cfg.model = cfg.model.algorithm
    cfg.optim_wrapper = cfg.optim_wrapper.base


def simsiam_of_sidae(cfg):
    """SimSiam with SidAE's encoder, projector and predictor: drop the decoder."""
    cfg.model.type = 'SimSiam'
    cfg.model.pop('decoder')
    cfg.model.pop('w')


CIFAR = dict(batch=64, size=32)
VARIANTS: Dict[str, Variant] = {
    'none': Variant(backbones=tuple(BACKBONES)),
    'vcreg-fast': Variant(vcreg('fast'), ('resnet50', 'vit-b32')),
    'vcreg-explicit': Variant(vcreg('explicit'), ('resnet50', 'vit-b32')),
    'vcreg-fast-sampled': Variant(vcreg('fast', sample_ratio=SAMPLED_FRACTION),
                                  ('resnet50', 'vit-b32')),
    'rhosim': Variant(rhosim(), ('resnet18', 'resnet50')),
    'rhosim-checkpoint': Variant(rhosim(checkpoint=True), ()),
    'rhosim-authors-code': Variant(rhosim(preset='authors_code'), ()),
    'mocov3': Variant(backbones=('vit-s16-ssl',), baseline='mocov3', algorithm=Algorithm(
        SER_MOCOV3, views=2, batch=16, size=224, inherit=True)),
    'ser-mocov3': Variant(backbones=('vit-s16-ssl',), baseline='mocov3', algorithm=Algorithm(
        SER_MOCOV3, views=3, batch=16, size=224, metainfo=ser_metainfo)),
    'simclr': Variant(backbones=('r18-cifar-ssl',), baseline='simclr', algorithm=Algorithm(
        MCR_SIMCLR, views=2, edit=mcr_base_algorithm, **CIFAR)),
    'mcr-simclr': Variant(backbones=('r18-cifar-ssl',), baseline='simclr', algorithm=Algorithm(
        MCR_SIMCLR, views=2, edit=mcr_edit(meta_grad='second_order'), **CIFAR)),
    'mcr-simclr-fd': Variant(backbones=('r18-cifar-ssl',), baseline='simclr',
                             algorithm=Algorithm(MCR_SIMCLR, views=2, **CIFAR,
                                                 edit=mcr_edit(meta_grad='finite_difference'))),
    'mcr-simclr-first-order': Variant(backbones=('r18-cifar-ssl',), baseline='simclr',
                                      algorithm=Algorithm(MCR_SIMCLR, views=2, **CIFAR,
                                                          edit=mcr_edit(meta_grad='first_order'))),
    'simsiam': Variant(backbones=('r18-cifar-ssl',), baseline='simsiam', algorithm=Algorithm(
        SIDAE, views=2, edit=simsiam_of_sidae, **CIFAR)),
    'sidae': Variant(backbones=('r18-cifar-ssl',), baseline='simsiam', algorithm=Algorithm(
        SIDAE, views=3, **CIFAR)),
}

#: Groups of algorithm rows, timed together like a backbone's rows.
ALGORITHM_GROUPS = tuple(dict.fromkeys(
    g for v in VARIANTS.values() if v.algorithm for g in v.backbones))
GROUPS = tuple(BACKBONES) + ALGORITHM_GROUPS


def rows_to_run(backbones: Sequence[str],
                variants: Optional[Sequence[str]]) -> Dict[str, List[str]]:
    """backbone -> its variant names, baselines first. ``variants=None``: the default
    pairs of the registry; otherwise every named variant on every named backbone it
    applies to (classifier variants on classifier backbones, algorithm variants on their
    own groups). Backbones left without a variant are left out."""
    plan = {}
    for bb in backbones:
        if variants is None:
            names = [v for v in VARIANTS if bb in VARIANTS[v].backbones]
        elif bb in BACKBONES:
            names = [v for v in variants if VARIANTS[v].algorithm is None]
        else:
            names = [v for v in variants if bb in VARIANTS[v].backbones]
        if names:
            baselines = [VARIANTS[v].baseline for v in names]
            plan[bb] = list(dict.fromkeys(baselines + names))
    return plan


# --------------------------------------------------------------------------- models and steps


def build_model(backbone: str, variant: str, size: int, seed: int, device: str):
    """``RegularizedModel`` of one classifier row in train mode; the same seed gives
    every variant of a backbone the same architecture weights."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    bb, var = BACKBONES[backbone], VARIANTS[variant]
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='RegularizedModel', architecture=bb.architecture(size),
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


def algorithm_config(algo: Algorithm, device: str):
    """The config of an algorithm row after its edit and this machine's fixes."""
    from mmengine.config import Config
    from sslreg.compat import fix_config_for_this_machine
    path = inherited_base(algo.config) if algo.inherit else algo.config
    if '::' in path:
        path = Config._get_cfg_path(path, ROOT)[0]
    cfg = Config.fromfile(path if osp.isabs(path) else osp.join(ROOT, path))
    if algo.edit is not None:
        algo.edit(cfg)
    fix_config_for_this_machine(cfg)
    if not device.startswith('cuda') and cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'  # fp16 autocast needs CUDA
        cfg.optim_wrapper.pop('loss_scale', None)
    return cfg


def build_algorithm(variant: str, seed: int, device: str):
    """(model, optim_wrapper) of an algorithm row, built as tools/train.py builds them."""
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    # the current MMEngine logger: warnings only (not the optimizer constructor's
    # per-parameter lines on stdout, where the table goes)
    MMLogger.get_instance('benchmark_overhead', log_level='WARNING')
    cfg = algorithm_config(VARIANTS[variant].algorithm, device)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model
    if cfg.get('data_preprocessor') is not None:  # as the Runner merges it
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg)
    if not device.startswith('cuda'):  # SyncBN no config names (NonLinearNeck's default)
        model = revert_sync_batchnorm(model)
    model = model.to(device).train()
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


def synthetic_views(algo: Algorithm, seed: int) -> dict:
    """``train_step``'s data: ``views`` uint8 image batches and data samples."""
    from mmpretrain.structures import DataSample
    gen, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    inputs = [torch.randint(0, 256, (algo.batch, 3, algo.size, algo.size), generator=gen,
                            dtype=torch.uint8) for _ in range(algo.views)]
    samples = []
    for _ in range(algo.batch):
        sample = DataSample()
        if algo.metainfo is not None:
            sample.set_metainfo(algo.metainfo(rng))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def make_train_step(model, optim_wrapper, data: dict, device: str,
                    logged: Optional[List[str]] = None) -> StepFn:
    """One MMEngine training iteration of an algorithm; ``logged`` receives the names
    of the values it logs (so a row shows its regularizer's terms were computed)."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_current_instance()
    state = dict(it=0)

    def step():
        # What the Runner's loop provides (schedules such as DINO's teacher temperature
        # and MCR's lambda warm-up read them).
        hub.update_info('iter', state['it'])
        hub.update_info('epoch', 0)
        hub.update_info('max_iters', 10 ** 6)
        state['it'] += 1
        log_vars = model.train_step(data, optim_wrapper)
        if logged is not None:
            logged[:] = sorted(log_vars)
        if device.startswith('cuda'):
            torch.cuda.synchronize()
    return step


def build_row(backbone: str, variant: str, args, device: str):
    """(model, step, row) of one variant."""
    algo = VARIANTS[variant].algorithm
    if algo is None:
        inputs, data_samples = synthetic_batch(args.batch, args.size, args.seed, device)
        model = build_model(backbone, variant, args.size, args.seed, device)
        step = make_step(model, inputs, data_samples)
        batch, size = args.batch, args.size
    else:
        if args.ssl_batch is not None:
            algo = dataclasses.replace(algo, batch=args.ssl_batch)
        model, optim_wrapper = build_algorithm(variant, args.seed, device)
        logged = []
        step = make_train_step(model, optim_wrapper, synthetic_views(algo, args.seed), device,
                               logged)
        return model, step, dict(backbone=backbone, variant=variant, batch=algo.batch,
                                 size=algo.size, config=algo.config, logged=logged)
    return model, step, dict(backbone=backbone, variant=variant, batch=batch, size=size)


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
    steps, rows = [], {}
    for variant in variants:
        log(f'{backbone} / {variant}: build, FLOPs, memory')
        model, step, row = build_row(backbone, variant, args, device)
        row.update(flops=step_flops(step), memory_bytes=memory_bytes(model, step, device))
        rows[variant] = row
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
           ('baseline', 'baseline', '{}'), ('median_s', 'median step (s)', '{:.3f}'),
           ('time_ratio', 'time × baseline', '{:.3f}'),
           ('memory_ratio', '{mem} × baseline', '{:.3f}'),
           ('flop_ratio', 'FLOP × baseline', '{:.3f}'))


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
    parser.add_argument('--backbones', type=csv_names(list(GROUPS)), default=list(GROUPS),
                        help=f'comma-separated, from {",".join(GROUPS)} (default: all; the '
                        'last ones are groups of SSL-algorithm rows)')
    parser.add_argument('--variants', type=csv_names(list(VARIANTS)), default=None,
                        help=f'comma-separated, from {",".join(VARIANTS)}; each runs on every '
                        'backbone (default: the registry\'s default pairs)')
    parser.add_argument('--batch', type=int, default=8,
                        help='batch size of the classifier rows (default: 8; algorithm rows '
                        'use their own, see the module docstring)')
    parser.add_argument('--size', type=int, default=224,
                        help='input height and width of the classifier rows (default: 224)')
    parser.add_argument('--ssl-batch', type=int, default=None,
                        help='batch size of the algorithm rows (default: each row\'s own)')
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
    if args.repeats < 1 or args.warmup < 0 or args.batch < 1 or args.size < 1 or (
            args.ssl_batch is not None and args.ssl_batch < 1):
        parser.error('--repeats, --batch, --ssl-batch and --size must be >= 1, --warmup >= 0')
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

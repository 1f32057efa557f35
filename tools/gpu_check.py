"""GPU check of sslreg's core with torch + torchvision only (no OpenMMLab, no install).

    python tools/gpu_check.py                        # CUDA: about 1-2 min on one GPU
    python tools/gpu_check.py --device cpu --small   # seconds; tests/test_gpu_check.py

Needs only ``torch`` and ``torchvision``. It puts the repository root on ``sys.path``
and imports ``sslreg.losses`` and ``sslreg.regularizers``, nothing else; OpenMMLab is
refused in this process even where it is installed (``sys.modules[name] = None``), so
sslreg runs in its torch-only mode and the check measures the core a plain-PyTorch user
gets. It prints two Markdown tables headed by the device name and the torch version.

1. **Overhead** of the core regularizers on ``torchvision.models.resnet50()`` (blocks
   ``layer*.*``: 16 bottlenecks) and ``vit_b_32()`` (``encoder.layers.encoder_layer_*``:
   12 blocks, (N, L, C) tokens, channels last), in fp32 and under bf16 autocast.
   Variants: ``none``; ``vcreg-fast`` (VCReg, identity forward, gradient added in
   backward) and ``vcreg-explicit`` (the loss through autograd) on every block;
   ``rhosim`` (ρSIM, preset 'paper', ρ = 0.2) on every block. One step is the forward
   (under autocast for bf16) with the regularizers collecting, cross-entropy plus the
   ``loss_*`` terms, and backward; no optimizer. Method as in
   ``tools/benchmark_overhead.py`` (which measures the OpenMMLab faces):

   * one model per architecture, the same weights and batch for every variant; a
     variant's regularizers are attached before its step and the others detached;
   * interleaved timing: variants round-robin, ``--warmup`` untimed rounds, then
     ``--repeats`` timed ones, ``torch.cuda.synchronize()`` before and after each
     step; a variant's time is the median of its repeats, the ratio is over ``none``'s;
   * memory (CUDA): ``torch.cuda.max_memory_allocated()`` over one separate step (peak
     stats reset before it), minus what was allocated before the step, plus the
     variant's own parameter bytes (model + regularizer heads): the peak of that
     variant's step as if it were alone on the device (the other variants' heads and
     the batch are not counted). Gradients are dropped after every step. On CPU
     there is no peak counter: the column is the bytes autograd saves for backward
     (unique storages) + parameters + gradients, a proxy.

2. **Gradient check**: ``sslreg.losses.vcreg.vcreg_fast``'s backward (with zero
   downstream gradient, so the gradient it adds alone) against autograd of
   ``vcreg_loss`` with the same arguments, on a (N, C, H, W) map like ResNet-50's
   stage 1 and a (N, L, C) token map like ViT-B/32's, in fp32 and under bf16 autocast
   (bf16 inputs, as block outputs are under autocast). Error = max |a - b| / max |b|.
   Pass: <= 1e-4 in fp32; <= 1e-2 in bf16 (one bf16 rounding of the gradient is up to
   2^-8 of an element, 2^-7 for the larger of two neighbouring roundings). Both are also
   compared with a float64 reference of the same input, for information.

Exit status 1 when a gradient check fails. ``--json PATH`` writes every number.
"""
import argparse
import json
import math
import os.path as osp
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List

# OpenMMLab is refused before sslreg is imported: the check must not depend on it.
OPENMMLAB = ('mmengine', 'mmcv', 'mmpretrain', 'mmseg', 'mmdet')
for _name in OPENMMLAB:
    sys.modules.setdefault(_name, None)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from sslreg.losses.vcreg import vcreg_fast, vcreg_loss  # noqa: E402
from sslreg.regularizers import RhoSIM, VCReg, collecting, pop_terms, probing  # noqa: E402

MODELS = {
    # name: (builder for an input size, glob of every block)
    'resnet50': (lambda size: torchvision.models.resnet50(), 'layer*.*'),
    'vit_b_32': (lambda size: torchvision.models.vit_b_32(image_size=size),
                 'encoder.layers.encoder_layer_*'),
}
VARIANTS: Dict[str, Callable[[str], Dict[str, nn.Module]]] = {
    'none': lambda blocks: {},
    'vcreg-fast': lambda blocks: {'vcreg': VCReg(layers=blocks, mode='fast')},
    'vcreg-explicit': lambda blocks: {'vcreg': VCReg(layers=blocks, mode='explicit')},
    'rhosim': lambda blocks: {'sim': RhoSIM(layers=blocks, rho=0.2, preset='paper')},
}
PRECISIONS = ('fp32', 'bf16')
TOLERANCE = {'fp32': 1e-4, 'bf16': 1e-2}


def log(message: str):
    print(f'[gpu_check] {message}', file=sys.stderr, flush=True)


def synchronize(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def param_bytes(*modules: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


# --------------------------------------------------------------------------- overhead


class Variant:
    """One row: the shared model with this variant's regularizers attached."""

    def __init__(self, name: str, model: nn.Module, blocks: str, probe: torch.Tensor):
        self.name, self.model = name, model
        self.regs = nn.ModuleDict(VARIANTS[name](blocks))
        self.layers: List[str] = []
        for reg in self.regs.values():
            self.layers = reg.attach(model)
        needs_probe = [r for r in self.regs.values() if r.needs_probe]
        if needs_probe:  # ρSIM sizes its heads from one forward
            model.eval()
            with torch.no_grad(), probing(needs_probe):
                model(probe)
            model.train()
        self.regs.to(probe.device).train()
        self.detach()
        self.params = [p for p in (*model.parameters(), *self.regs.parameters())
                       if p.requires_grad]

    def attach(self):
        for reg in self.regs.values():
            reg.attach(self.model)

    def detach(self):
        for reg in self.regs.values():
            reg.detach()

    def step(self, x: torch.Tensor, y: torch.Tensor, bf16: bool):
        with collecting(self.regs.values()), \
                torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = self.model(x)
        terms = pop_terms(self.regs)
        loss = F.cross_entropy(logits.float(), y)
        for key, value in terms.items():
            if key.startswith('loss_'):
                loss = loss + value
        loss.backward()
        for p in self.params:
            p.grad = None
        return loss.detach()


def activate(variants: List[Variant], chosen: Variant):
    for v in variants:
        v.detach()
    chosen.attach()


def step_memory(variant: Variant, x, y, bf16: bool) -> int:
    device = x.device
    if device.type == 'cuda':
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        variant.step(x, y, bf16)
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return peak - before + param_bytes(variant.model, variant.regs)
    # CPU proxy: unique storages saved for backward + parameters + gradients
    params = {p.untyped_storage().data_ptr() for p in (*variant.model.parameters(),
                                                       *variant.regs.parameters())}
    saved: Dict[int, int] = {}

    def pack(t):
        try:
            ptr, nbytes = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without a plain storage
            ptr, nbytes = id(t), t.numel() * t.element_size()
        if ptr not in params:
            saved[ptr] = max(saved.get(ptr, 0), nbytes)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        variant.step(x, y, bf16)
    grads = sum(p.numel() * p.element_size() for p in variant.params)
    return sum(saved.values()) + param_bytes(variant.model, variant.regs) + grads


def measure_model(name: str, variants: List[str], precisions: List[str], args,
                  device: torch.device) -> List[dict]:
    build, blocks = MODELS[name]
    torch.manual_seed(args.seed)
    model = build(args.size).to(device).train()
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(device)
    y = torch.randint(0, 1000, (args.batch,), generator=gen).to(device)
    probe = torch.zeros(1, 3, args.size, args.size, device=device)
    built = [Variant(v, model, blocks, probe) for v in variants]
    rows = []
    for precision in precisions:
        bf16 = precision == 'bf16'
        log(f'{name} {precision}: memory, then {args.warmup} warm-up + {args.repeats} timed '
            f'rounds over {len(built)} variants (batch {args.batch}, {args.size} px)')
        memory, losses = {}, {}
        for v in built:
            activate(built, v)
            memory[v.name] = step_memory(v, x, y, bf16)
        times: Dict[str, List[float]] = {v.name: [] for v in built}
        for rnd in range(args.warmup + args.repeats):
            for v in built:
                activate(built, v)
                synchronize(device)
                start = time.perf_counter()
                loss = v.step(x, y, bf16)
                synchronize(device)
                if rnd >= args.warmup:
                    times[v.name].append(time.perf_counter() - start)
                losses[v.name] = float(loss)
        base = built[0].name
        for v in built:
            median = statistics.median(times[v.name])
            rows.append(dict(
                model=name, precision=precision, variant=v.name, batch=args.batch,
                size=args.size, blocks=len(v.layers) if v.layers else 0,
                times_s=times[v.name], median_s=median,
                time_ratio=median / statistics.median(times[base]),
                memory_bytes=memory[v.name], memory_ratio=memory[v.name] / memory[base],
                last_loss=losses[v.name], finite=math.isfinite(losses[v.name])))
    for v in built:
        v.detach()
    del built, model
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return rows


# --------------------------------------------------------------------------- gradient check


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def gradient_check(args, device: torch.device) -> List[dict]:
    """vcreg_fast's added gradient against autograd of vcreg_loss (module docstring)."""
    if args.small:
        cases = [('conv map', (4, 16, 8, 8), 1), ('tokens', (4, 5, 32), -1)]
    else:  # ResNet-50 stage 1 at batch 32, 224 px; ViT-B/32 tokens at batch 32
        cases = [('conv map', (32, 256, 56, 56), 1), ('tokens', (32, 50, 768), -1)]
    rows = []
    for precision in PRECISIONS:
        dtype = torch.bfloat16 if precision == 'bf16' else torch.float32
        for label, shape, channel_dim in cases:
            gen = torch.Generator().manual_seed(args.seed)
            base = torch.randn(shape, generator=gen)
            shared = base.narrow(channel_dim, 0, 1)  # correlated channels, nonzero mean
            x = (0.5 * base + 0.5 * shared + 0.3).to(device=device, dtype=dtype)
            kw = dict(alpha=1.0, beta=1.0, eps=1e-4, channel_dim=channel_dim)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == 'bf16'):
                x_fast = x.clone().requires_grad_(True)
                y = vcreg_fast(x_fast, **kw)
                x_expl = x.clone().requires_grad_(True)
                loss = vcreg_loss(x_expl, **kw)
            y.backward(torch.zeros_like(y))
            loss.backward()
            x64 = x.detach().double().requires_grad_(True)
            vcreg_loss(x64, **kw).backward()
            err = rel_err(x_fast.grad, x_expl.grad)
            rows.append(dict(
                precision=precision, tensor=label, shape=list(shape),
                grad_dtype=str(x_fast.grad.dtype).replace('torch.', ''),
                fast_vs_explicit=err, fast_vs_fp64=rel_err(x_fast.grad, x64.grad),
                explicit_vs_fp64=rel_err(x_expl.grad, x64.grad),
                tolerance=TOLERANCE[precision], passed=bool(err <= TOLERANCE[precision])))
            del x_fast, x_expl, x64, y, loss
    return rows


# --------------------------------------------------------------------------- output


def device_label(device: torch.device) -> str:
    if device.type == 'cuda':
        return (f'{torch.cuda.get_device_name(device)} · torch {torch.__version__} · '
                f'torchvision {torchvision.__version__} · CUDA {torch.version.cuda} · '
                f'cudnn.benchmark={torch.backends.cudnn.benchmark} · '
                f'matmul TF32={torch.backends.cuda.matmul.allow_tf32}')
    cpu = platform.processor() or platform.machine()
    return (f'CPU ({cpu}, {torch.get_num_threads()} threads) · torch {torch.__version__} · '
            f'torchvision {torchvision.__version__}')


def overhead_table(rows: List[dict], device: torch.device) -> str:
    mem = 'peak step mem (MiB)' if device.type == 'cuda' else 'saved+param+grad mem (MiB)'
    lines = [f'| model | precision | variant | blocks | batch | input | median step (ms) | '
             f'time × none | {mem} | mem × none |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | {r['variant']} | {r['blocks']} | "
                     f"{r['batch']} | {r['size']}x{r['size']} | {1e3 * r['median_s']:.1f} | "
                     f"{r['time_ratio']:.3f} | {r['memory_bytes'] / 2 ** 20:.0f} | "
                     f"{r['memory_ratio']:.3f} |")
    return '\n'.join(lines)


def gradient_table(rows: List[dict]) -> str:
    lines = ['| precision | tensor | shape | grad dtype | fast vs explicit | fast vs fp64 | '
             'explicit vs fp64 | tolerance | result |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['precision']} | {r['tensor']} | {tuple(r['shape'])} | "
                     f"{r['grad_dtype']} | {r['fast_vs_explicit']:.2e} | "
                     f"{r['fast_vs_fp64']:.2e} | {r['explicit_vs_fp64']:.2e} | "
                     f"{r['tolerance']:.0e} | {'PASS' if r['passed'] else 'FAIL'} |")
    return '\n'.join(lines)


def csv_of(choices) -> Callable[[str], List[str]]:
    def parse(text: str) -> List[str]:
        names = [n.strip() for n in text.split(',') if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f'unknown {unknown or text!r}; choose from '
                                             f'{", ".join(choices)}')
        return names
    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Overhead and fast-gradient check of sslreg's core regularizers on a "
                    'GPU, torch + torchvision only')
    parser.add_argument('--device', default='cuda', help="'cuda' (default), 'cuda:1', 'cpu'")
    parser.add_argument('--small', action='store_true',
                        help='tiny sizes (batch 2, 64 px, no warm-up, 1 repeat, small '
                        'gradient-check tensors): keeps the script working on a CPU')
    parser.add_argument('--batch', type=int, default=None, help='default 32 (small: 2)')
    parser.add_argument('--size', type=int, default=None, help='input px, default 224 (small: 64)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed rounds, default 5 (small: 0)')
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed rounds, default 20 (small: 1)')
    parser.add_argument('--models', type=csv_of(list(MODELS)), default=list(MODELS))
    parser.add_argument('--variants', type=csv_of(list(VARIANTS)), default=list(VARIANTS),
                        help="default: all ('none' is always added first)")
    parser.add_argument('--precisions', type=csv_of(PRECISIONS), default=list(PRECISIONS))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', default=None, help='write every number to this JSON file')
    args = parser.parse_args(argv)
    small = args.small
    for key, full, tiny in (('batch', 32, 2), ('size', 224, 64), ('warmup', 5, 0),
                            ('repeats', 20, 1)):
        if getattr(args, key) is None:
            setattr(args, key, tiny if small else full)
    if args.batch < 2 or args.size < 32 or args.warmup < 0 or args.repeats < 1:
        parser.error('--batch >= 2, --size >= 32, --warmup >= 0, --repeats >= 1')
    if args.size % 32:
        parser.error('--size must be a multiple of 32 (ViT-B/32 patches)')
    args.variants = ['none'] + [v for v in args.variants if v != 'none']
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise SystemExit('gpu_check: no CUDA device here; use --device cpu --small')
        torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    label = device_label(device)
    log(label)
    overhead = []
    for name in args.models:
        overhead += measure_model(name, args.variants, args.precisions, args, device)
    log('gradient check: vcreg_fast vs autograd of vcreg_loss')
    grads = gradient_check(args, device)
    loaded = sorted(m for m, mod in sys.modules.items()
                    if mod is not None and m.partition('.')[0] in OPENMMLAB)
    passed = all(r['passed'] for r in grads)
    finite = all(r['finite'] for r in overhead)
    elapsed = time.perf_counter() - started
    print(f'### sslreg gpu_check — {label}\n')
    print(f'Overhead vs `none` (same model, precision and batch; median of {args.repeats} '
          f'interleaved steps after {args.warmup} warm-up rounds; forward + backward, no '
          'optimizer).\n')
    print(overhead_table(overhead, device))
    print('\nFast VCReg gradient vs autograd of the explicit loss '
          '(max |a - b| / max |b|; zero downstream gradient).\n')
    print(gradient_table(grads))
    print(f"\nOpenMMLab modules loaded: {', '.join(loaded) or 'none'}. "
          f"Losses finite: {'yes' if finite else 'NO'}. "
          f"Gradient check: {'PASS' if passed else 'FAIL'}. {elapsed:.0f} s.")
    result = dict(device=label, torch=torch.__version__, torchvision=torchvision.__version__,
                  args=vars(args), overhead=overhead, gradient_check=grads,
                  gradient_check_passed=passed, losses_finite=finite,
                  openmmlab_loaded=loaded, seconds=elapsed)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    if not passed or not finite:
        raise SystemExit(1)
    return result


if __name__ == '__main__':
    main()

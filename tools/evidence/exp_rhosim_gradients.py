"""ρSIM: gradient behaviour and kept information (SIM paper Sec. 4.7 Fig. 5, Sec. 4.5).

Setup (fixed before any reported run; nothing here was tuned on seeds 0..4, and no
tuning runs on other seeds were made either):

* Data: scikit-learn's ``load_digits`` (1797 8x8 images), pixels / 16, standardized with
  the training mean/std, bilinearly upsampled to 16x16. One fixed stratified split
  (``random_state=0``, independent of the seed): 1197 train / 600 test. The seed only
  sets the model's init (``torch.manual_seed(seed)`` before the model is built) and the
  data order (``numpy.random.RandomState(seed)`` permutations), so a seed's 'with' and
  'without' runs share both (paired). ρSIM's heads are built after the model, so they do
  not change its init; ρSIM's position sampling uses torch's global RNG, which the data
  order does not.
* Model: a tiny ResNet: stem conv3x3(1->16)+BN+ReLU, then six residual blocks
  ``blocks.0`` .. ``blocks.5`` (16@16x16, 16@16x16, 32@8x8 (stride 2), 32@8x8, 64@4x4
  (stride 2), 64@4x4), global average pool, linear. Every block map has >= 4x4 positions.
* Training: SGD (lr 0.05, momentum 0.9, weight decay 5e-4, constant lr), batch 32,
  10 epochs (380 iterations); quick mode: 2 epochs on 256 training images.
* ρSIM: ``RhoSIM(layers='blocks.*', rho=0.2, preset='paper', loss_weight=lam)`` on the
  six blocks (paper preset: sum over blocks). Pre-declared grid, both always run:
  ``lam = 5e-3`` (the paper's λ; primary) and ``lam = 5e-2`` (10x, declared in advance
  in case the paper's λ has a negligible gradient share on this toy). Both share the
  same 'without' runs.

Metrics (per seed; 'with' / 'without' are the paired runs):

* ``grad_logstd``: the global L2 norm g_t of the gradient of the total loss (task + λ
  L_sim; the task loss alone in 'without') over the model's parameters (not ρSIM's
  heads), every iteration; the std of log g_t over iterations t >= W, with the warm-up
  W = max(5, 10% of the iterations). Lower = smoother (paper: lower with ρSIM, 'down').
  This std includes the slow trend of g_t over training, not only its jitter.
* ``grad_logstd_task``: the same for the task (cross-entropy) loss's gradient alone,
  measured in the same iteration with ``torch.autograd.grad`` before the total backward.
* ``grad_spikes``: the number of iterations t >= W with g_t > 2 * EMA_{t-1}, where EMA is
  the exponential moving average of g (α = 0.1, EMA_0 = g_0, updated every iteration
  including warm-up), on the total gradient ('down').
* ``recon_nmse``: per block, a fresh linear probe from the block's output to its input,
  on held-out data: the trained model (eval mode) is run on the 600 test images; per
  block, the target is each input token (the input map area-pooled to the output grid
  for the two stride-2 blocks; C_in values), the features the output's 3x3 neighbourhood
  around that position (zero padded; 9 * C_out values, standardized with the fit half's
  statistics). A ridge regression (sklearn ``Ridge(alpha=1.0)``) is fit on the tokens of
  test images 0..299 and scored on those of images 300..599 (each side at most 10000
  tokens, a fixed random subsample, the same in every run): NMSE = sum of squared errors / sum of squared deviations of the target from
  its fit-half mean (1 - pooled R^2; 0 = the input is linearly recoverable, 1 = nothing
  is). Averaged over the six blocks. "How much of its input a block keeps"; paper:
  lower with ρSIM ('down').
* ``test_acc``: top-1 accuracy on the 600 test images after training ('up').

Metrics for the larger λ carry the suffix ``@lam5e-2``. Logged, not as paired metrics:
the ρSIM gradient share ||grad(λ L_sim)|| / ||grad(task)|| over the model's parameters,
at iteration 0 (fresh model and heads, the first batch) and averaged over training
(computed every iteration as the total gradient minus the task gradient), and L_sim
(without λ) over the first vs last 10% of the iterations, to check it is optimized.

Post-hoc, in the notes only (added after the first full run of seeds 0..4, because the
figure showed that the std of log g_t is dominated by g's decay over training, which ρSIM
slows, rather than by jitter): the std of Δ log g_t = log g_t - log g_{t-1} (t >= W),
for the total and the task gradient. It is not a pre-declared metric and gets no verdict.
"""
import math
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
#: where the figure goes (tests point this at a temporary folder)
FIGURE_DIR = ROOT / 'docs' / 'evidence'
FIGURE_NAME = 'rhosim_grad_norms.png'

NAME = 'rhosim_gradients'
CLAIM = ('ρSIM makes training gradients smoother (fewer gradient-norm spikes, Fig. 5) and '
         'makes each block keep more of its input (lower reconstruction error, Sec. 4.5), '
         'without hurting accuracy.')

PAPER_LAM = 5e-3
LARGER_LAM = 5e-2   # pre-declared (10x the paper's λ), always run
RHO = 0.2
LR, MOMENTUM, WD, BATCH = 0.05, 0.9, 5e-4, 32
EPOCHS_FULL, EPOCHS_QUICK, QUICK_TRAIN = 10, 2, 256
SIZE = 16
EMA_ALPHA, SPIKE_FACTOR = 0.1, 2.0
RIDGE_ALPHA, MAX_TOKENS = 1.0, 10000


# ----------------------------------------------------------------------------- data/model

def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=600, stratify=y, random_state=0)
    mean, std = xtr.mean(), xtr.std()

    def prep(a):
        t = torch.from_numpy((a - mean) / std).unsqueeze(1)
        return F.interpolate(t, size=(SIZE, SIZE), mode='bilinear', align_corners=False)

    return prep(xtr), torch.from_numpy(ytr), prep(xte), torch.from_numpy(yte)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Identity() if stride == 1 and cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                    nn.BatchNorm2d(cout)))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.short(x))


class TinyResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 16, 1), Block(16, 32, 2),
                                    Block(32, 32, 1), Block(32, 64, 2), Block(64, 64, 1))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        return self.fc(h.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------- metrics

def spikiness(g, warmup: int):
    """(std of log g over t >= warmup, number of t >= warmup with g_t > 2 EMA_{t-1})."""
    g = np.asarray(g, dtype=np.float64)
    ema, spikes = g[0], 0
    for t in range(1, len(g)):
        if t >= warmup and g[t] > SPIKE_FACTOR * ema:
            spikes += 1
        ema = EMA_ALPHA * g[t] + (1 - EMA_ALPHA) * ema
    return float(np.std(np.log(g[warmup:]))), spikes


def _tokens_in(z_in, out_hw):
    """Input tokens on the output grid: (N*H*W, C_in)."""
    if z_in.shape[-2:] != out_hw:
        z_in = F.adaptive_avg_pool2d(z_in, out_hw)
    return z_in.permute(0, 2, 3, 1).reshape(-1, z_in.shape[1])


def _tokens_out(z_out):
    """3x3 neighbourhood of the output around each position: (N*H*W, 9*C_out)."""
    N, C, H, W = z_out.shape
    u = F.unfold(z_out, 3, padding=1)             # (N, 9C, HW)
    return u.transpose(1, 2).reshape(N * H * W, 9 * C)


def reconstruction_nmse(z_in: torch.Tensor, z_out: torch.Tensor, fit_fraction: float = 0.5,
                        max_tokens: int = MAX_TOKENS) -> float:
    """NMSE of a fresh ridge probe from a block's output (3x3 neighbourhood) to its input
    token, fit on the first ``fit_fraction`` of the samples and scored on the rest
    (module docstring). z_in, z_out: (N, C, H, W); z_in may be an integer multiple of
    z_out's grid."""
    from sklearn.linear_model import Ridge
    z_in, z_out = z_in.detach().float(), z_out.detach().float()
    N = z_out.shape[0]
    n_fit = int(round(N * fit_fraction))
    per = z_out.shape[-2] * z_out.shape[-1]
    y = _tokens_in(z_in, z_out.shape[-2:])
    x = _tokens_out(z_out)
    rs = np.random.RandomState(0)   # fixed token subsamples (same for every run)

    def take(lo, hi):
        idx = np.arange(lo, hi)
        if len(idx) > max_tokens:
            idx = np.sort(rs.choice(idx, max_tokens, replace=False))
        idx = torch.from_numpy(idx)
        return x[idx].numpy().astype(np.float64), y[idx].numpy().astype(np.float64)

    xf, yf = take(0, n_fit * per)
    xe, ye = take(n_fit * per, N * per)
    mu, sd = xf.mean(0), xf.std(0) + 1e-8
    probe = Ridge(alpha=RIDGE_ALPHA).fit((xf - mu) / sd, yf)
    err = ((probe.predict((xe - mu) / sd) - ye) ** 2).sum()
    return float(err / (((ye - yf.mean(0)) ** 2).sum() + 1e-12))


def block_maps(model, x, names):
    """{name: (input, output)} of the named blocks on x (eval mode, no grad)."""
    maps, handles = {}, []
    for name in names:
        mod = model.get_submodule(name)
        handles.append(mod.register_forward_hook(
            lambda m, inp, out, name=name: maps.__setitem__(name, (inp[0], out))))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return maps


# ----------------------------------------------------------------------------- training

def _norm(grads):
    return math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))


def train_one(seed: int, lam, data, epochs: int, n_train=None):
    """One run; lam None = without ρSIM. Returns a dict of per-iteration logs and metrics."""
    from sslreg.regularizers import RhoSIM, collecting, pop_terms, probing
    xtr, ytr, xte, yte = data
    if n_train is not None:
        xtr, ytr = xtr[:n_train], ytr[:n_train]
    torch.manual_seed(seed)
    model = TinyResNet()
    reg = None
    extra = []
    if lam is not None:
        reg = RhoSIM(layers='blocks.*', rho=RHO, preset='paper', loss_weight=lam)
        reg.attach(model)
        with torch.no_grad(), probing([reg]):
            model.eval()(xtr[:2])
        extra = list(reg.parameters())
        reg.train()
    params = list(model.parameters())
    opt = torch.optim.SGD([*params, *extra], lr=LR, momentum=MOMENTUM, weight_decay=WD)
    order_rng = np.random.RandomState(seed)
    log = dict(g_total=[], g_task=[], share=[], lsim=[], loss=[])
    model.train()
    n = len(xtr)
    for _ in range(epochs):
        perm = order_rng.permutation(n)
        for i in range(0, n - BATCH + 1, BATCH):   # drop the last partial batch
            idx = torch.from_numpy(perm[i:i + BATCH])
            xb, yb = xtr[idx], ytr[idx]
            if reg is not None:
                with collecting([reg]):
                    logits = model(xb)
                terms = pop_terms({'sim': reg})
                lsim = terms['loss_sim']
            else:
                logits = model(xb)
                lsim = None
            task = F.cross_entropy(logits, yb)
            g_task = torch.autograd.grad(task, params, retain_graph=lsim is not None)
            loss = task if lsim is None else task + lsim
            opt.zero_grad(set_to_none=True)
            if lsim is None:
                for p, g in zip(params, g_task):
                    p.grad = g
            else:
                loss.backward()
            nt = _norm(g_task)
            log['g_task'].append(nt)
            log['g_total'].append(_norm([p.grad for p in params]))
            if lsim is not None:
                diff = [p.grad - g for p, g in zip(params, g_task)]
                log['share'].append(_norm(diff) / max(nt, 1e-30))
                log['lsim'].append(float(lsim.detach()) / lam)
            log['loss'].append(float(loss.detach()))
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xte).argmax(1) == yte).float().mean())
    names = [f'blocks.{i}' for i in range(len(model.blocks))]
    maps = block_maps(model, xte, names)
    nmse = [reconstruction_nmse(*maps[nm]) for nm in names]
    log.update(test_acc=acc, recon_nmse=float(np.mean(nmse)), recon_per_block=nmse)
    return log


# ----------------------------------------------------------------------------- figure

def plot(curves: Dict[str, List[List[float]]], path: Path, warmup: int, title: str):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    colors = {'without': 'tab:gray', f'ρSIM λ={PAPER_LAM:g}': 'tab:blue',
              f'ρSIM λ={LARGER_LAM:g}': 'tab:red'}
    for ax, key, sub in zip(axes, ('g_total', 'g_task'),
                            ('total-loss gradient (what the optimizer sees)',
                             'task-loss (cross-entropy) gradient')):
        for label, runs in curves.items():
            a = np.log(np.asarray([r[key] for r in runs]))
            t = np.arange(a.shape[1])
            ax.plot(t, np.exp(a.mean(0)), color=colors[label], lw=1.0,
                    label=f'{label} (geo-mean of {a.shape[0]} seeds)')
            ax.fill_between(t, np.exp(a.min(0)), np.exp(a.max(0)), color=colors[label],
                            alpha=0.18, lw=0)
        ax.axvline(warmup, color='k', ls=':', lw=0.8)
        ax.set_yscale('log')
        ax.set_xlabel('iteration')
        ax.set_title(sub, fontsize=10)
    axes[0].set_ylabel('global grad norm (model params), log scale')
    axes[0].legend(fontsize=8)
    fig.suptitle(title + '  (band: min-max over seeds; dotted: end of warm-up)', fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- entry point

def run(seeds: List[int], quick: bool = False, progress: Callable[[str], None] = print) -> dict:
    t0 = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_data()
        epochs = EPOCHS_QUICK if quick else EPOCHS_FULL
        n_train = QUICK_TRAIN if quick else None
        conds = {'without': None, 'paper': PAPER_LAM, 'larger': LARGER_LAM}
        runs = {c: [] for c in conds}
        for seed in seeds:
            for c, lam in conds.items():
                ts = time.time()
                r = train_one(seed, lam, data, epochs, n_train)
                runs[c].append(r)
                msg = (f'[{NAME}] seed {seed} {c:8s}: acc {r["test_acc"]:.3f} '
                       f'recon {r["recon_nmse"]:.3f} ({time.time() - ts:.1f}s)')
                if r['share']:
                    msg += f' share0 {r["share"][0]:.3g}'
                progress(msg)
    finally:
        torch.set_num_threads(threads)

    n_iter = len(runs['without'][0]['g_total'])
    warmup = max(5, int(0.1 * n_iter))

    def per_seed(c):
        out = {'grad_logstd': [], 'grad_logstd_task': [], 'grad_spikes': [],
               'recon_nmse': [], 'test_acc': []}
        for r in runs[c]:
            s, k = spikiness(r['g_total'], warmup)
            out['grad_logstd'].append(s)
            out['grad_spikes'].append(float(k))
            out['grad_logstd_task'].append(spikiness(r['g_task'], warmup)[0])
            out['recon_nmse'].append(r['recon_nmse'])
            out['test_acc'].append(r['test_acc'])
        return out

    base = per_seed('without')
    claims = {
        'grad_logstd': ('down', 'Fig. 5: smoother gradient norm with ρSIM (std of log '
                                'total-gradient norm after warm-up is lower)'),
        'grad_logstd_task': ('down', 'Fig. 5: smoother task-loss gradient norm with ρSIM'),
        'grad_spikes': ('down', 'Fig. 5: fewer gradient-norm spikes (> 2x EMA, α=0.1) with ρSIM'),
        'recon_nmse': ('down', 'Sec. 4.5: blocks keep more of their input with ρSIM (lower '
                               'held-out linear reconstruction NMSE, output -> input)'),
        'test_acc': ('up', 'ρSIM does not hurt (paper: improves) test accuracy'),
    }
    metrics = {}
    for c, suffix in (('paper', ''), ('larger', f'@lam{LARGER_LAM:.0e}'.replace('e-0', 'e-'))):
        vals = per_seed(c)
        for m, (direction, claim) in claims.items():
            lam = PAPER_LAM if c == 'paper' else LARGER_LAM
            tag = (f' [λ={lam:g}, paper\'s λ]' if c == 'paper'
                   else f' [λ={lam:g}, pre-declared 10x paper\'s λ]')
            metrics[m + suffix] = {'with': vals[m], 'without': list(base[m]),
                                   'direction': direction, 'claim': claim + tag}

    fig_path = Path(FIGURE_DIR) / FIGURE_NAME
    plot({'without': runs['without'], f'ρSIM λ={PAPER_LAM:g}': runs['paper'],
          f'ρSIM λ={LARGER_LAM:g}': runs['larger']}, fig_path, warmup,
         f'TinyResNet on digits 16x16, {n_iter} iterations, seeds {list(seeds)}')
    try:
        fig_rel = str(fig_path.resolve().relative_to(ROOT))
    except ValueError:
        fig_rel = str(fig_path)

    def fmt(v):
        return '[' + ', '.join(f'{x:.3g}' for x in v) + ']'

    notes = [
        f'Setup: {n_iter} iterations ({epochs} epochs, batch {BATCH}, SGD lr {LR} momentum '
        f'{MOMENTUM} wd {WD}, constant lr), TinyResNet (6 residual blocks, 16x16 input), '
        f'digits fixed split 1197/600{" (quick: first " + str(QUICK_TRAIN) + " train images)" if quick else ""}; '
        f'ρSIM on blocks.* (rho={RHO}, preset paper, sum over 6 blocks). Seeds {list(seeds)}; '
        'nothing tuned (no tuning runs at all).',
        f'λ grid pre-declared: {PAPER_LAM:g} (paper, unsuffixed metrics) and {LARGER_LAM:g} '
        '(suffix @lam5e-2), both always run against the same paired "without" runs.',
        f'grad_logstd / grad_logstd_task: std over iterations t >= {warmup} (warm-up = '
        'max(5, 10% of iterations)) of log of the global L2 gradient norm over model '
        'parameters, of the total loss / of the cross-entropy alone. grad_spikes: count of '
        f't >= {warmup} with g_t > {SPIKE_FACTOR:g} x EMA_(t-1), EMA α={EMA_ALPHA} from '
        'EMA_0 = g_0, on the total gradient.',
        'recon_nmse: per block, ridge (alpha 1, standardized features) from the 3x3 '
        'neighbourhood of the block output to the input token (area-pooled to the output '
        'grid for stride-2 blocks), fit on test images 0-299, scored on 300-599 (<= 10000 fixed-subsampled tokens each); NMSE = SSE / '
        'SS of target around its fit mean; mean over the 6 blocks. test_acc: top-1 on the '
        '600 test images.',
    ]
    for c, lam in (('paper', PAPER_LAM), ('larger', LARGER_LAM)):
        share0 = [r['share'][0] for r in runs[c]]
        share_mean = [float(np.mean(r['share'])) for r in runs[c]]
        k = max(1, n_iter // 10)
        first = [float(np.mean(r['lsim'][:k])) for r in runs[c]]
        last = [float(np.mean(r['lsim'][-k:])) for r in runs[c]]
        notes.append(
            f'λ={lam:g}: ρSIM gradient share ||grad(λ L_sim)|| / ||grad(task)|| on model '
            f'params at iteration 0 per seed {fmt(share0)}, mean over training {fmt(share_mean)}; '
            f'L_sim/λ (sum over 6 blocks) mean of first {k} its {fmt(first)} -> last {k} its '
            f'{fmt(last)}.')
    # Post-hoc (added after the first full run of seeds 0..4, on seeing that the std of
    # log g is dominated by the decay of g over training): the std of the per-iteration
    # change of log g, which a smooth trend does not inflate. Reported in notes only,
    # not as a pre-declared metric.
    def dlog_std(g):
        return float(np.std(np.diff(np.log(np.asarray(g[warmup:], dtype=np.float64)))))

    for key, what in (('g_total', 'total'), ('g_task', 'task')):
        wo = [dlog_std(r[key]) for r in runs['without']]
        for c, lam in (('paper', PAPER_LAM), ('larger', LARGER_LAM)):
            w = [dlog_std(r[key]) for r in runs[c]]
            d = [a - b for a, b in zip(w, wo)]
            notes.append(
                f'POST-HOC (chosen after seeing the first full run, not pre-declared): std of '
                f'Δ log g_t (t >= {warmup}, {what} gradient), λ={lam:g}: with {fmt(w)} vs '
                f'without {fmt(wo)}; paired diff mean {np.mean(d):+.3g}, per seed {fmt(d)}.')
    for c in conds:
        pb = np.mean([r['recon_per_block'] for r in runs[c]], axis=0)
        notes.append(f'recon NMSE per block (mean over seeds), {c}: {fmt(pb)}')
    notes.append(f'wall time {time.time() - t0:.0f}s for {len(seeds)} seed(s) x 3 runs.')
    return {'metrics': metrics, 'figures': [fig_rel], 'setup': notes[0], 'notes': notes[1:]}


if __name__ == '__main__':
    import argparse
    import json
    import sys
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--json', default=None)
    a = ap.parse_args()
    res = run(a.seeds, a.quick, print)
    for k, v in res['metrics'].items():
        w, wo = np.array(v['with']), np.array(v['without'])
        print(f'{k:28s} with {w.mean():.4g}±{w.std(ddof=1) if len(w) > 1 else 0:.3g}  '
              f'without {wo.mean():.4g}±{wo.std(ddof=1) if len(wo) > 1 else 0:.3g}  '
              f'diff {(w - wo).mean():+.4g} per-seed {np.round(w - wo, 4).tolist()}')
    print('\n'.join([res['setup'], *res['notes']]))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))

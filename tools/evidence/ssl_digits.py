"""What the SSL experiments (SER, MCR, SidAE) share: digits images, views, a training loop
through the algorithms' own ``train_step``, and the frozen-feature probes.

Not an experiment (no ``exp_`` prefix): ``run.py`` does not discover it.

* **Data.** scikit-learn's digits (1,797 8x8 images), upsampled bilinearly to 3x32x32,
  scaled to [-1, 1]; a 70/30 stratified split drawn per seed. Pre-training sees the
  training split's images only (no labels); probes fit on training labels and score on
  the test split.
* **Views** (:func:`view`) are drawn in torch from a seeded ``torch.Generator``: a random
  resized crop (area ``crop_scale``, aspect 3/4-4/3, bilinear) and, with probability 0.8,
  brightness and contrast jitter of 0.4, the SSL configs' photometric strength (digits
  are gray: saturation and hue have nothing to act on). Tensor ops, so a 30-epoch run is
  seconds, not the minutes a per-image PIL pipeline takes.
* **Models** are built from the shipped digits configs (``configs/<method>/*_digits.py``)
  by MMEngine, with overrides the experiments state, and trained through their own
  ``train_step`` (MCR's bi-level step included) with MMEngine optimizer wrappers.
* **Probes** (:func:`low_label_accuracy`): multinomial logistic regression
  (scikit-learn, L-BFGS, C = 1) on standardized frozen features (the scaler is fit on
  all training-split features, which needs no labels). The labelled subset takes
  ``ceil(fraction * n_c)`` images of each class ``c``; for "1%" on digits that is 2 per
  class (20 labels; 1% exactly, 13 labels, cannot hold every class). The accuracy is
  the mean over ``draws`` subsets, drawn from a seed, so it is not one lucky subset.
* :func:`coding_rate` is the rate-distortion log-det of Yu et al. (2020):
  ``R(Z) = 1/2 logdet(I + d / (m eps^2) Z^T Z)`` for ``m`` L2-normalized rows in
  ``d`` dimensions, ``eps^2 = 0.5``.
"""
import math
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

ROOT_CONFIGS = 'configs'
SIZE = 32


def digits_split(seed: int):
    """(x_train, y_train, x_test, y_test): images (N, 3, 32, 32) in [-1, 1], labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)

    def images(a):
        x = torch.tensor(a, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
        x = F.interpolate(x, size=(SIZE, SIZE), mode='bilinear', align_corners=False)
        return (x * 2 - 1).expand(-1, 3, -1, -1).contiguous()
    return images(Xtr), torch.tensor(ytr), images(Xte), torch.tensor(yte)


def _uniform(n, lo, hi, gen):
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def random_resized_crop(x: torch.Tensor, gen: torch.Generator, scale=(0.2, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """Per-sample crop of area ``scale`` (fraction) and aspect ``ratio``, resized back to
    the input size (bilinear); crops larger than the image are clipped to it."""
    n = x.shape[0]
    area = _uniform(n, *scale, gen)
    logr = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), gen)
    w = torch.sqrt(area * torch.exp(logr)).clamp(max=1.0)
    h = torch.sqrt(area / torch.exp(logr)).clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - h)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)


def jitter(x: torch.Tensor, gen: torch.Generator, strength: float = 0.4,
           prob: float = 0.8) -> torch.Tensor:
    """Brightness and contrast jitter (factors in [1 - s, 1 + s]) with probability
    ``prob`` per sample, on images in [-1, 1]."""
    n = x.shape[0]
    on = (torch.rand(n, generator=gen) < prob).float().view(n, 1, 1, 1)
    b = _uniform(n, 1 - strength, 1 + strength, gen).view(n, 1, 1, 1)
    c = _uniform(n, 1 - strength, 1 + strength, gen).view(n, 1, 1, 1)
    u = (x + 1) / 2
    mean = u.mean(dim=(1, 2, 3), keepdim=True)
    v = ((u * b - mean * b) * c + mean * b).clamp(0, 1)
    return on * (v * 2 - 1) + (1 - on) * x


def view(x: torch.Tensor, gen: torch.Generator, crop_scale=(0.2, 1.0)) -> torch.Tensor:
    return jitter(random_resized_crop(x, gen, crop_scale), gen)


def build(cfg_path: str, **model_overrides):
    """The model of a shipped config, with ``model_overrides`` merged into ``cfg.model``
    (MMEngine's own merge: nested dicts update), built in mmpretrain's scope."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    import sslreg  # noqa: F401  (registers sslreg's modules)
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(cfg_path)
    cfg.merge_from_dict({f'model.{k}': v for k, v in model_overrides.items()})
    return MODELS.build(cfg.model), cfg


def cosine_lr(base_lr: float, it: int, total: int, warmup: int = 0) -> float:
    if it < warmup:
        return base_lr * (it + 1) / warmup
    return 0.5 * base_lr * (1 + math.cos(math.pi * (it - warmup) / max(1, total - warmup)))


def train(model, optim_wrapper, make_batch: Callable[[torch.Tensor, torch.Generator], dict],
          x: torch.Tensor, epochs: int, batch: int, seed: int,
          set_lr: Callable[[int, int], None], log_keys=()) -> Dict[str, List[float]]:
    """``epochs`` passes over ``x`` in shuffled batches (the last partial batch dropped),
    one ``model.train_step`` each; returns the per-iteration values of ``log_keys``
    (and ``'loss'``) from the step's log. The message hub gets ``iter`` / ``max_iters``
    (momentum schedules of BYOL and MoCo v3 read them)."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_current_instance()
    gen = torch.Generator().manual_seed(seed)
    per_epoch = len(x) // batch
    total = epochs * per_epoch
    hub.update_info('max_iters', total)
    hub.update_info('max_epochs', epochs)
    logs: Dict[str, List[float]] = {k: [] for k in ('loss',) + tuple(log_keys)}
    model.train()
    it = 0
    for ep in range(epochs):
        hub.update_info('epoch', ep)
        perm = torch.randperm(len(x), generator=gen)
        for b in range(per_epoch):
            hub.update_info('iter', it)
            set_lr(it, total)
            out = model.train_step(make_batch(x[perm[b * batch:(b + 1) * batch]], gen),
                                   optim_wrapper)
            if 'loss' not in out:
                out['loss'] = sum(v for k, v in out.items() if k.startswith('loss'))
            for k in logs:
                if k in out:
                    logs[k].append(float(torch.as_tensor(out[k]).detach()))
            it += 1
    model.eval()
    return logs


@torch.no_grad()
def features(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
             batch: int = 256) -> np.ndarray:
    return torch.cat([fn(x[i:i + batch]).flatten(1) for i in range(0, len(x), batch)]).numpy()


def pooled(backbone_out) -> torch.Tensor:
    """The last output of a backbone, global-average-pooled if it is a map."""
    f = backbone_out[-1] if isinstance(backbone_out, (tuple, list)) else backbone_out
    return f.mean(dim=(2, 3)) if f.dim() == 4 else f


def low_label_accuracy(ftr: np.ndarray, ytr: np.ndarray, fte: np.ndarray, yte: np.ndarray,
                       fraction: float, draws: int = 10, seed: int = 0) -> float:
    """Mean test accuracy of logistic regressions fit on ``draws`` labelled subsets of
    ``ceil(fraction * n_c)`` images per class (module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    ytr, yte = np.asarray(ytr), np.asarray(yte)
    scaler = StandardScaler().fit(ftr)
    a, b = scaler.transform(ftr), scaler.transform(fte)
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(draws):
        idx = np.concatenate([
            rng.choice(np.flatnonzero(ytr == c), math.ceil(fraction * (ytr == c).sum()),
                       replace=False) for c in np.unique(ytr)])
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(a[idx], ytr[idx])
        accs.append(float((clf.predict(b) == yte).mean()))
        if fraction >= 1:
            break
    return float(np.mean(accs))


def coding_rate(z: np.ndarray, eps_sq: float = 0.5) -> float:
    """``1/2 logdet(I + d/(m eps^2) Z^T Z)`` of the L2-normalized rows of ``z`` (float64)."""
    z = torch.as_tensor(z, dtype=torch.float64)
    z = F.normalize(z, dim=1)
    m, d = z.shape
    return float(0.5 * torch.logdet(torch.eye(d, dtype=torch.float64)
                                    + d / (m * eps_sq) * z.T @ z))


def mean_std(v) -> str:
    v = np.asarray(v, float)
    sd = v.std(ddof=1) if len(v) > 1 else float('nan')
    return f'{v.mean():.4g} ± {sd:.2g}'


def one_thread() -> Optional[int]:
    """Small models: one intra-op thread is faster than two on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


def gradient_share(losses: Dict[str, torch.Tensor], reg_key: str, task_key: str,
                   params) -> float:
    """||d losses[reg_key] / d params|| / ||d losses[task_key] / d params|| (one batch)."""
    params = [p for p in params if p.requires_grad]

    def norm(loss):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return math.sqrt(sum(float(g.double().square().sum()) for g in grads if g is not None))
    return norm(losses[reg_key]) / max(norm(losses[task_key]), 1e-30)


def epoch_means(values: List[float], epochs: int) -> List[float]:
    """Per-epoch means of a per-iteration series (equal-length epochs)."""
    if not values:
        return []
    per = max(1, len(values) // epochs)
    return [float(np.mean(values[i:i + per])) for i in range(0, per * epochs, per)]


def run_arms(seeds, arms: Dict[str, object], train_one: Callable, describe: Callable,
             progress) -> Dict[str, List[dict]]:
    """Every arm on every seed, paired: ``train_one(seed, arms[arm], data)`` on the seed's
    digits split (the same for every arm), one intra-op thread; ``describe(result)`` is
    the progress line's tail. Returns ``{arm: [result per seed, in seed order]}``."""
    threads = one_thread()
    res: Dict[str, List[dict]] = {a: [] for a in arms}
    total, done = len(seeds) * len(arms), 0
    try:
        for seed in seeds:
            data = digits_split(seed)
            for arm, value in arms.items():
                r = train_one(seed, value, data)
                res[arm].append(r)
                done += 1
                progress(f'seed {seed} {arm}: {describe(r)}', done / total)
    finally:
        torch.set_num_threads(threads)
    return res

"""The fixed-feature transfer probe of VCReg's Table 1 (App. C.1, after Kornblith et al.,
"Do Better ImageNet Models Transfer Better?", CVPR 2019): L2-regularized multinomial
logistic regression on frozen features, its strength picked on a validation split.

**Objective.** For features ``x_i`` (``n`` of them, ``D`` wide), labels ``y_i`` among ``K``
classes, weights ``W`` (``K x D``) and biases ``b`` (``K``)::

    L(W, b) = 1/n * sum_i CE(W x_i + b, y_i)  +  lambda / 2 * ||W||_F^2

``CE`` the softmax cross-entropy; the bias is **not** penalized. The minimizing ``W`` is
unique (the penalty is strictly convex; at the optimum its class rows sum to zero); ``b`` is
unique up to a constant added to every class (the logits' differences are unique).

**lambda <-> scikit-learn's C.** ``LogisticRegression(solver='lbfgs', C=C)`` minimizes
``C * sum_i CE_i + 1/2 * ||W||^2`` (intercept unpenalized) = ``C * n * L`` when
``C = 1 / (n * lambda)``: the same minimizer. ``n`` is the number of samples the model is
fit on, so one ``lambda`` is a different ``C`` for the selection fit (train) and the refit
(train + val); the mean-CE form keeps ``lambda`` meaningful across both.

**Solver.** L-BFGS (scipy's L-BFGS-B, the one scikit-learn's ``'lbfgs'`` calls) on ``L`` and
its exact gradient, both computed by torch in float64, full batch, on whatever device the
features are on (:func:`fit_logistic_regression`); stops when the largest gradient entry
of ``L`` is <= ``tol`` (1e-6), the relative decrease of ``L`` is below 64 machine epsilons,
or after ``max_iter`` (1000) iterations.

**Protocol** (:func:`transfer_probe`): ``lambda`` from :func:`lambda_grid` (45 values
log-spaced in ``[1e-5, 1e5]``), each fit on the training part and scored by top-1 accuracy
on the validation part (:func:`select_lambda`, which is never given test data); ties go to
the **largest** lambda (the most regularized of the best: sslreg's choice). Then one refit
on train + val with that ``lambda``, evaluated on test. Datasets without a validation split
hold out :func:`holdout_split` (20 % of each class, seed 0) of the training split. The
sweep runs from the largest lambda down, each fit starting from the previous solution, and
the refit from the selection fit at the chosen lambda (the optimum of a convex problem does
not depend on the start; this only saves iterations).

Usage::

    result = transfer_probe(train_x, train_y, val_x, val_y, test_x, test_y)
    result['top1'], result['lambda']        # test accuracy (%), the chosen lambda
"""
import math
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize

from .linear_probe import label_subset

__all__ = ['LogisticModel', 'lambda_grid', 'sklearn_C', 'logistic_objective',
           'fit_logistic_regression', 'holdout_split', 'select_lambda', 'transfer_probe']

#: The sweep of VCReg App. C.1: 45 values, log-spaced, 1e-5 ... 1e5.
GRID = dict(low=1e-5, high=1e5, num=45)
#: Held-out fraction of the training split where a dataset has no validation split.
VAL_FRACTION, VAL_SEED = 0.2, 0


class LogisticModel(NamedTuple):
    weight: torch.Tensor   # (K, D)
    bias: torch.Tensor     # (K,)
    iterations: int = 0
    grad_max: float = float('nan')  # largest |dL/dtheta| at the end
    converged: bool = False         # L-BFGS-B stopped on tol / ftol, not on max_iter

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.weight)
        return x @ self.weight.T + self.bias

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).argmax(1)


def lambda_grid(low: float = GRID['low'], high: float = GRID['high'],
                num: int = GRID['num']) -> torch.Tensor:
    """``num`` values log-spaced in ``[low, high]`` (float64), both ends included."""
    if not 0 < low <= high or num < 1:
        raise ValueError(f'need 0 < low <= high and num >= 1, got {low}, {high}, {num}')
    return torch.logspace(math.log10(low), math.log10(high), num, dtype=torch.float64)


def sklearn_C(lam: float, n: int) -> float:
    """scikit-learn's ``C`` with the same minimizer as ``lambda`` on ``n`` samples:
    ``1 / (n * lambda)`` (module docstring)."""
    return 1.0 / (n * float(lam))


def logistic_objective(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor,
                       y: torch.Tensor, lam: float) -> torch.Tensor:
    """``L(W, b) = mean_i CE(W x_i + b, y_i) + lambda / 2 * ||W||_F^2``."""
    return F.cross_entropy(x @ weight.T + bias, y) + 0.5 * lam * weight.pow(2).sum()


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, lam: float,
                            num_classes: Optional[int] = None, max_iter: int = 1000,
                            tol: float = 1e-6, history_size: int = 10,
                            init: Optional[LogisticModel] = None) -> LogisticModel:
    """The minimizer of :func:`logistic_objective`: scipy's L-BFGS-B (as scikit-learn's
    ``solver='lbfgs'``) on ``L`` and its exact gradient, both computed by torch in float64
    on ``x``'s device, from zero (or from ``init``: a warm start). Stops when the largest
    gradient entry is <= ``tol``, the relative decrease of ``L`` is below 64 machine
    epsilons (scikit-learn's ``ftol``), or after ``max_iter`` iterations."""
    x = x.to(torch.float64)
    y = torch.as_tensor(y, device=x.device).reshape(-1).long()
    n, dim = x.shape
    k = int(num_classes or int(y.max()) + 1)
    onehot = F.one_hot(y, k).to(x)
    theta0 = (np.zeros(k * dim + k) if init is None else np.concatenate([
        init.weight.detach().cpu().double().numpy().reshape(-1),
        init.bias.detach().cpu().double().numpy()]))

    def unpack(theta):
        t = torch.from_numpy(theta).to(x.device)
        return t[:k * dim].view(k, dim), t[k * dim:]

    def loss_and_grad(theta):
        weight, bias = unpack(theta)
        logits = x @ weight.T + bias
        logp = logits.log_softmax(1)
        loss = -(logp * onehot).sum() / n + 0.5 * lam * weight.pow(2).sum()
        g = (logp.exp() - onehot) / n                       # dL/dlogits
        grad = torch.cat([(g.T @ x + lam * weight).reshape(-1), g.sum(0)])
        return float(loss), grad.cpu().numpy()

    res = minimize(loss_and_grad, theta0, jac=True, method='L-BFGS-B',
                   options=dict(maxiter=int(max_iter), gtol=float(tol), maxcor=history_size,
                                ftol=64 * np.finfo(float).eps))
    weight, bias = unpack(res.x)
    return LogisticModel(weight.clone(), bias.clone(), int(res.nit),
                         float(np.abs(res.jac).max()), bool(res.success))


def holdout_split(labels: torch.Tensor, fraction: float = VAL_FRACTION,
                  seed: int = VAL_SEED) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(train_indices, val_indices)`` of a training split without a validation split:
    ``val`` takes ``max(1, round(fraction * n_c))`` of each class's ``n_c`` samples
    (:func:`~sslreg.evaluation.linear_probe.label_subset`, drawn from ``seed``), ``train``
    the rest; both sorted, disjoint, together everything."""
    labels = torch.as_tensor(labels).reshape(-1)
    if not 0 < fraction < 1:
        raise ValueError(f'the held-out fraction must be in (0, 1), got {fraction}')
    val = label_subset(labels, fraction, seed)
    keep = torch.ones(labels.numel(), dtype=torch.bool)
    keep[val] = False
    return torch.nonzero(keep).reshape(-1), val


def _accuracy(model: LogisticModel, x: torch.Tensor, y: torch.Tensor) -> float:
    y = torch.as_tensor(y).reshape(-1).to(model.weight.device)
    return float((model.predict(x) == y).double().mean() * 100)


def select_lambda(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                  val_y: torch.Tensor, lambdas: Optional[Sequence[float]] = None,
                  num_classes: Optional[int] = None, **fit_kwargs):
    """``(best_lambda, [val top-1 (%) per lambda, in the order of lambdas])``: each
    ``lambda`` fit on ``train`` and scored on ``val`` only; ties go to the largest lambda."""
    best, accs, _ = _sweep(train_x, train_y, val_x, val_y, lambdas, num_classes, **fit_kwargs)
    return best, accs


def _sweep(train_x, train_y, val_x, val_y, lambdas=None, num_classes=None, **fit_kwargs):
    """:func:`select_lambda` and the model fit at the best lambda."""
    lambdas = [float(v) for v in (lambda_grid() if lambdas is None else lambdas)]
    num_classes = int(num_classes or int(max(train_y.max(), val_y.max())) + 1)
    accs, model, best = {}, None, (-1.0, None, None)
    for lam in sorted(set(lambdas), reverse=True):  # large -> small, warm-started
        model = fit_logistic_regression(train_x, train_y, lam, num_classes, init=model,
                                        **fit_kwargs)
        accs[lam] = _accuracy(model, val_x, val_y)
        if accs[lam] > best[0]:  # strictly: a tie keeps the larger lambda seen first
            best = (accs[lam], lam, model)
    return best[1], [accs[v] for v in lambdas], best[2]


def transfer_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                   val_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                   lambdas: Optional[Sequence[float]] = None,
                   num_classes: Optional[int] = None, **fit_kwargs) -> dict:
    """VCReg App. C.1: pick ``lambda`` on val (:func:`select_lambda`), refit on train + val,
    top-1 (%) on test. The refit starts from the selection fit at that lambda. Returns
    ``dict(top1, lambda, sklearn_C (of the refit), val_top1 (per lambda), lambdas, num_fit,
    iterations, grad_max, converged)`` (the last three of the refit)."""
    lambdas = [float(v) for v in (lambda_grid() if lambdas is None else lambdas)]
    train_y, val_y, test_y = (torch.as_tensor(t).reshape(-1).long()
                              for t in (train_y, val_y, test_y))
    # the classes are those of train + val: nothing of the test set shapes the fits
    num_classes = int(num_classes or int(max(train_y.max(), val_y.max())) + 1)
    lam, val_top1, chosen = _sweep(train_x, train_y, val_x, val_y, lambdas, num_classes,
                                   **fit_kwargs)
    fit_x = torch.cat([train_x.to(torch.float64), val_x.to(train_x.device, torch.float64)])
    fit_y = torch.cat([train_y, val_y])
    model = fit_logistic_regression(fit_x, fit_y, lam, num_classes, init=chosen, **fit_kwargs)
    return dict(top1=_accuracy(model, test_x, test_y), val_top1_at_lambda=max(val_top1),
                **{'lambda': lam}, sklearn_C=sklearn_C(lam, fit_y.numel()),
                val_top1=val_top1, lambdas=lambdas, num_fit=int(fit_y.numel()),
                iterations=model.iterations, grad_max=model.grad_max,
                converged=model.converged)

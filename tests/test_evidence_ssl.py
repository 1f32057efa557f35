"""tools/evidence/ssl_digits.py, the shared pieces of the SER / MCR / SidAE experiments,
against direct computations."""
import math
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / 'tools' / 'evidence'))
import ssl_digits as S  # noqa: E402


def test_coding_rate_is_the_logdet_formula():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 6))
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    m, d = zn.shape
    sign, logdet = np.linalg.slogdet(np.eye(d) + d / (m * 0.5) * zn.T @ zn)
    assert sign > 0
    assert S.coding_rate(z) == pytest.approx(0.5 * logdet, rel=1e-12)
    # collapsed rows (one direction) code at a far lower rate than spread ones
    assert S.coding_rate(np.ones((40, 6))) < S.coding_rate(z) / 2


def test_full_crop_is_the_identity_and_views_follow_the_generator():
    x = torch.randn(3, 3, 32, 32)
    same = S.random_resized_crop(x, torch.Generator().manual_seed(0), (1.0, 1.0), (1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-5)
    a = S.view(x, torch.Generator().manual_seed(1))
    b = S.view(x, torch.Generator().manual_seed(1))
    c = S.view(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # jitter keeps images in [-1, 1]; with prob 0 it is the identity
    assert torch.equal(S.jitter(x.clamp(-1, 1), torch.Generator(), prob=0.0), x.clamp(-1, 1))
    assert S.jitter(x.clamp(-1, 1), torch.Generator().manual_seed(0)).abs().max() <= 1


def test_digits_split_is_stratified_and_seeded():
    xtr, ytr, xte, yte = S.digits_split(0)
    assert xtr.shape[1:] == (3, 32, 32) and len(xtr) + len(xte) == 1797
    assert xtr.min() >= -1 and xtr.max() <= 1
    assert abs(len(xte) / 1797 - 0.3) < 0.01
    assert np.allclose(np.bincount(ytr) / len(ytr), np.bincount(yte) / len(yte), atol=0.01)
    assert not torch.equal(S.digits_split(1)[1], ytr)


def test_low_label_accuracy_is_logistic_regression_on_the_per_class_subset():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 50)
    f = rng.normal(size=(200, 5)) + y[:, None] * 0.7
    yt = np.repeat(np.arange(4), 20)
    ft = rng.normal(size=(80, 5)) + yt[:, None] * 0.7
    got = S.low_label_accuracy(f, y, ft, yt, 0.01, draws=1, seed=5)
    # the same draw by hand: ceil(1% of 50) = 1 image per class
    r = np.random.default_rng(5)
    idx = np.concatenate([r.choice(np.flatnonzero(y == c), 1, replace=False) for c in range(4)])
    sc = StandardScaler().fit(f)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(f)[idx], y[idx])
    assert got == pytest.approx(float((clf.predict(sc.transform(ft)) == yt).mean()))
    full = S.low_label_accuracy(f, y, ft, yt, 1.0)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(f), y)
    assert full == pytest.approx(float((clf.predict(sc.transform(ft)) == yt).mean()))


def test_gradient_share_and_epoch_means():
    p = torch.nn.Parameter(torch.randn(5))
    q = torch.nn.Parameter(torch.randn(3))
    losses = dict(reg=3 * p.sum() + 0 * q.sum(), task=p.sum() + 4 * q.sum())
    want = math.sqrt(9 * 5) / math.sqrt(5 + 16 * 3)
    assert S.gradient_share(losses, 'reg', 'task', [p, q]) == pytest.approx(want)
    assert S.epoch_means([1, 2, 3, 4, 5, 6], 3) == [1.5, 3.5, 5.5]
    assert S.cosine_lr(1.0, 0, 10, warmup=2) == 0.5
    assert S.cosine_lr(1.0, 2, 10, warmup=2) == 1.0
    assert S.cosine_lr(1.0, 10, 10) == pytest.approx(0.0)

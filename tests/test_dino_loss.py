"""DINOLoss (sslreg.losses.dino): the formula recomputed by hand in float64, the centre,
the teacher temperature schedule, bit-identity with SERDINO's earlier in-model loss, the
centre's all-reduce over two processes, and old SERDINO checkpoints (``center``)."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from sslreg.losses.dino import DINOLoss

pytestmark = pytest.mark.timeout(120)

K = 7


def _outputs(n_views, b=5, seed=0, dtype=torch.float64, grad=False):
    g = torch.Generator().manual_seed(seed)
    out = [torch.randn(b, K, generator=g, dtype=dtype) * 3 for _ in range(n_views)]
    return [o.requires_grad_(grad) for o in out]


def _reference(student, teacher, center, t_temp, s_temp):
    """The docstring's equation, written out: exp / log / sums, no softmax helpers."""
    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        z = (t - center) / t_temp
        e = torch.exp(z - z.max(dim=1, keepdim=True).values)
        q = e / e.sum(dim=1, keepdim=True)
        for v, s in enumerate(student):
            if v == i:
                continue
            y = s / s_temp
            m = y.max(dim=1, keepdim=True).values
            log_p = y - m - torch.log(torch.exp(y - m).sum(dim=1, keepdim=True))
            total = total + (-(q * log_p).sum(dim=1)).sum() / s.shape[0]
            pairs += 1
    return total / pairs


@pytest.mark.parametrize('n_student,n_teacher', [(2, 2), (4, 2), (3, 1)])
def test_loss_is_the_equation_in_float64(n_student, n_teacher):
    loss_fn = DINOLoss(K, teacher_temp=0.07, warmup_teacher_temp=0.03,
                       warmup_teacher_temp_steps=10, student_temp=0.2).double()
    loss_fn.center.copy_(torch.randn(1, K, dtype=torch.float64))
    student = _outputs(n_student, seed=1, grad=True)
    teacher = _outputs(n_teacher, seed=2)
    center = loss_fn.center.clone()
    got = loss_fn.cross_entropy(student, teacher, step=4)
    want = _reference(student, teacher, center, 0.03 + (0.07 - 0.03) * 4 / 10, 0.2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # (one teacher view: student view 0 pairs with nothing, so it gets no gradient)
    g_got = torch.autograd.grad(got, student, allow_unused=True)
    g_want = torch.autograd.grad(want, student, allow_unused=True)
    for a, b in zip(g_got, g_want):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.equal(loss_fn.center, center)  # cross_entropy alone changes no state


def test_forward_uses_the_old_centre_then_moves_it():
    m = 0.8
    loss_fn = DINOLoss(K, center_momentum=m).double()
    c0 = torch.randn(1, K, dtype=torch.float64)
    loss_fn.center.copy_(c0)
    student, teacher = _outputs(2, seed=3, grad=True), _outputs(2, b=4, seed=4)
    student = [s[:4] for s in student]
    loss = loss_fn(student, teacher, step=0)
    torch.testing.assert_close(loss, _reference(student, teacher, c0, 0.04, 0.1),
                               rtol=1e-12, atol=1e-12)
    rows = torch.cat(teacher)  # every teacher row of every view
    torch.testing.assert_close(loss_fn.center, m * c0 + (1 - m) * rows.mean(0, keepdim=True),
                               rtol=1e-12, atol=1e-14)
    assert not teacher[0].requires_grad and loss.requires_grad


def test_teacher_temperature_schedule():
    w, t, warm = 0.04, 0.07, 30
    loss_fn = DINOLoss(K, teacher_temp=t, warmup_teacher_temp=w, warmup_teacher_temp_steps=warm)
    n = 100
    sched = loss_fn.teacher_temp_schedule(n)
    assert sched.dtype == torch.float64 and sched.shape == (n,)
    assert sched.tolist() == [loss_fn.teacher_temperature(i) for i in range(n)]
    # concat(linspace(w, t, W + 1)[:W], ones * t): the module docstring's form
    want = np.concatenate((np.linspace(w, t, warm + 1)[:warm], np.ones(n - warm) * t))
    np.testing.assert_allclose(sched.numpy(), want, rtol=1e-15, atol=1e-17)
    assert loss_fn.teacher_temperature(0) == w and loss_fn.teacher_temperature(warm) == t
    none = DINOLoss(K, teacher_temp=t, warmup_teacher_temp=w)  # no warm-up
    assert none.teacher_temperature(0) == t and torch.all(none.teacher_temp_schedule(5) == t)


# The loss as SERDINO computed it before it moved to sslreg.losses.dino (issue #13).
def _legacy_loss(s1, s2, t1, t2, center, temp, student_temp):
    p1 = F.softmax((t1 - center) / temp, dim=-1)
    p2 = F.softmax((t2 - center) / temp, dim=-1)
    ls1 = F.log_softmax(s1 / student_temp, dim=-1)
    ls2 = F.log_softmax(s2 / student_temp, dim=-1)
    return 0.5 * (-(p1 * ls2).sum(-1).mean() - (p2 * ls1).sum(-1).mean())


def _legacy_center(center, t, momentum):
    total = t.sum(0, keepdim=True)
    count = torch.tensor([float(t.shape[0])], device=t.device)
    return center.clone().mul_(momentum).add_(total / count, alpha=1 - momentum)


def test_bit_identical_to_the_earlier_serdino_loss():
    loss_fn = DINOLoss(K, teacher_temp=0.06, warmup_teacher_temp=0.02,
                       warmup_teacher_temp_steps=3, center_momentum=0.9)
    center = torch.zeros(1, K)
    for step in range(5):
        s1, s2 = _outputs(2, b=6, seed=10 + step, dtype=torch.float32, grad=True)
        t1, t2 = _outputs(2, b=6, seed=20 + step, dtype=torch.float32)
        warm = 3
        temp = 0.02 + (0.06 - 0.02) * (step / warm) if step < warm else 0.06
        want = _legacy_loss(s1, s2, t1, t2, center, temp, 0.1)
        got = loss_fn((s1, s2), (t1, t2), step)
        assert torch.equal(got, want), step
        for a, b in zip(torch.autograd.grad(got, (s1, s2)), torch.autograd.grad(want, (s1, s2))):
            assert torch.equal(a, b), step
        center = _legacy_center(center, torch.cat([t1, t2]), 0.9)
        assert torch.equal(loss_fn.center, center), step


def test_rejects_what_has_no_pair_or_no_temperature():
    with pytest.raises(ValueError, match='pair'):
        DINOLoss(K)(_outputs(1), _outputs(1))
    with pytest.raises(ValueError, match=r'\(B, K\)'):
        DINOLoss(K)([], _outputs(2))
    with pytest.raises(ValueError, match='temperatures'):
        DINOLoss(K, student_temp=0.0)


# --------------------------------------------------------------------------- two ranks


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank, port, out_dir):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=2)
    try:
        student, teacher = _outputs(2, b=6, seed=5), _outputs(2, b=6, seed=6)
        rows = slice(0, 2) if rank == 0 else slice(2, 6)  # uneven batches
        loss_fn = DINOLoss(K, center_momentum=0.7).double()
        loss = loss_fn([s[rows] for s in student], [t[rows] for t in teacher])
        torch.save(dict(loss=loss, center=loss_fn.center), os.path.join(out_dir, f'r{rank}.pt'))
    finally:
        dist.destroy_process_group()


def test_centre_is_all_reduced_over_ranks(tmp_path):
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method='fork')
    r0, r1 = (torch.load(tmp_path / f'r{r}.pt') for r in (0, 1))
    student, teacher = _outputs(2, b=6, seed=5), _outputs(2, b=6, seed=6)
    one = DINOLoss(K, center_momentum=0.7).double()
    one(student, teacher)  # the joined batch in one process
    for r in (r0, r1):
        torch.testing.assert_close(r['center'], one.center, rtol=1e-12, atol=1e-14)
    # the loss itself stays per rank (as the reference): rank 0's is its slice's
    local = DINOLoss(K).double().cross_entropy([s[:2] for s in student], [t[:2] for t in teacher])
    torch.testing.assert_close(r0['loss'], local, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- SERDINO


def test_serdino_uses_dinoloss_and_reads_old_checkpoints():
    from mmengine.registry import MODELS, init_default_scope  # (importing sslreg registered)
    init_default_scope('mmpretrain')
    cfg = dict(type='SERDINO',
               backbone=dict(type='LateClsViT', img_size=32, patch_size=8, cls_insert_layer=2,
                             arch=dict(embed_dims=32, num_layers=4, num_heads=2,
                                       feedforward_channels=64)),
               head=dict(out_channels=K, hidden_channels=16, bottleneck_channels=8),
               teacher_temp=0.05, warmup_teacher_temp=0.03, warmup_teacher_temp_iters=4,
               center_momentum=0.8, student_temp=0.2)
    model = MODELS.build(cfg)
    loss_fn = model.dino_loss
    assert isinstance(loss_fn, DINOLoss) and loss_fn.center.shape == (1, K)
    assert (loss_fn.teacher_temp, loss_fn.warmup_teacher_temp, loss_fn.student_temp,
            loss_fn.warmup_teacher_temp_steps, loss_fn.center_momentum) == (
                0.05, 0.03, 0.2, 4, 0.8)
    state = model.state_dict()
    assert 'dino_loss.center' in state and 'center' not in state
    old = {('center' if k == 'dino_loss.center' else k): v for k, v in state.items()}
    old['center'] = torch.arange(K, dtype=torch.float32)[None]
    other = MODELS.build(cfg)
    missing, unexpected = other.load_state_dict(old, strict=True)
    assert not missing and not unexpected
    assert torch.equal(other.dino_loss.center, old['center'])

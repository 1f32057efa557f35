"""SER's patch-wise NT-Xent (sslreg.losses.ser): the paper's formula, its negatives,
and the distributed form (2 CPU processes, gloo) against one process: same loss, same
gradients, for the loss alone and for SERMoCoV3 end to end."""
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from sslreg.losses.ser import flatten_maps, patch_nt_xent, ser_equivariance_loss

pytestmark = pytest.mark.timeout(300)


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


def brute_force(u, v, ids, tau):
    """ell_i of the module docstring, written out loop by loop."""
    u = torch.nn.functional.normalize(u, dim=1)
    v = torch.nn.functional.normalize(v, dim=1)
    total = 0.0
    for i in range(u.shape[0]):
        pos = math.exp(float(u[i] @ v[i]) / tau)
        neg = sum(math.exp(float(u[i] @ v[j]) / tau) for j in range(v.shape[0])
                  if ids[j] != ids[i])
        total += -math.log(pos / (pos + neg))
    return total / u.shape[0]


def test_matches_the_equation_and_excludes_same_image_negatives():
    torch.manual_seed(0)
    u, v = torch.randn(10, 6, dtype=torch.float64), torch.randn(10, 6, dtype=torch.float64)
    ids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    got = patch_nt_xent(u, v, ids, tau=0.2)
    assert got.item() == pytest.approx(brute_force(u, v, ids, 0.2), rel=1e-10)
    # with every token its own image, all other tokens are negatives: a different value
    assert got.item() != pytest.approx(patch_nt_xent(u, v, torch.arange(10), 0.2).item())
    # one image only: nothing to contrast against, the loss is exactly 0
    assert patch_nt_xent(u, v, torch.zeros(10, dtype=torch.long), 0.2).item() == 0.0


def test_aligned_maps_score_low_and_loss_is_symmetrized():
    torch.manual_seed(1)
    maps = [torch.randn(8, 3, 3) for _ in range(4)]
    rows, ids = flatten_maps(maps)
    aligned = patch_nt_xent(rows, rows, ids, 0.2)
    shuffled = patch_nt_xent(rows, rows[torch.randperm(rows.shape[0])], ids, 0.2)
    assert aligned < shuffled
    other = torch.randn_like(rows)
    sym = ser_equivariance_loss(rows, other, ids, other, rows, ids, 0.4)
    assert sym == pytest.approx(0.5 * (patch_nt_xent(rows, other, ids, 0.4)
                                       + patch_nt_xent(other, rows, ids, 0.4)).item())


def test_gradient_reaches_both_sides():
    u = torch.randn(12, 5, requires_grad=True)
    v = torch.randn(12, 5, requires_grad=True)
    ids = torch.arange(12) // 3
    patch_nt_xent(u, v, ids, 0.2).backward()
    assert u.grad.abs().sum() > 0 and v.grad.abs().sum() > 0


def test_input_checks():
    with pytest.raises(ValueError):
        patch_nt_xent(torch.randn(3, 4), torch.randn(4, 4), torch.arange(3), 0.2)
    with pytest.raises(ValueError):
        patch_nt_xent(torch.randn(3, 4), torch.randn(3, 4), torch.arange(3), 0.0)


# --------------------------------------------------------------------------- DDP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _loss_problem():
    """Per-image token maps of different sizes (ranks get different token counts)."""
    g = torch.Generator().manual_seed(3)
    sizes = [(2, 3), (3, 3), (2, 2), (4, 3), (3, 2), (2, 4)]
    a = [torch.randn(6, h, w, generator=g, dtype=torch.float64) for h, w in sizes]
    b = [torch.randn(6, h, w, generator=g, dtype=torch.float64) for h, w in sizes]
    return a, b


def _loss_and_grads(a, b, gather):
    a = [t.clone().requires_grad_(True) for t in a]
    b = [t.clone().requires_grad_(True) for t in b]
    ra, ids = flatten_maps(a)
    rb, _ = flatten_maps(b)
    loss = ser_equivariance_loss(ra, rb, ids, rb, ra, ids, 0.3, gather=gather)
    loss.backward()
    return loss.detach(), [t.grad for t in a], [t.grad for t in b]


def _tiny_moco_cfg():
    norm = dict(type='LN')
    neck = dict(type='NonLinearNeck', in_channels=32, hid_channels=48, out_channels=16,
                num_layers=2, with_bias=False, with_last_bn=False, with_avg_pool=False,
                norm_cfg=norm)
    return dict(
        type='SERMoCoV3',
        backbone=dict(type='LateClsViT', arch=dict(embed_dims=32, num_layers=3, num_heads=2,
                                                    feedforward_channels=64),
                      img_size=32, patch_size=8, cls_insert_layer=2),
        neck=neck,
        head=dict(type='MoCoV3Head', predictor=dict(neck, in_channels=16),
                  loss=dict(type='CrossEntropyLoss', loss_weight=0.4), temperature=0.2),
        ser=dict(equiv_ratio=0.5, lambda_equiv=1.0, tau=0.2))


def _moco_batch():
    """A global batch of 8 and its per-rank halves: rank r holds [base_r0, base_r1,
    eq_r0, eq_r1]; one process sees all base samples first, then all eq samples."""
    from mmpretrain.structures import DataSample
    from sslreg.geometry import sample_element
    import random
    rng = random.Random(5)
    g = torch.Generator().manual_seed(4)
    views = [torch.randn(8, 3, 32, 32, generator=g) for _ in range(3)]
    metas = [dict(ser_g1=sample_element(rng=rng).to_tuple(),
                  ser_g2=sample_element(rng=rng).to_tuple()) for _ in range(8)]
    rank_rows = {0: [0, 1, 4, 5], 1: [2, 3, 6, 7]}

    def take(rows):
        samples = []
        for r in rows:
            ds = DataSample()
            ds.set_metainfo(metas[r])
            samples.append(ds)
        return [v[rows] for v in views], samples

    return take(list(range(8))), {r: take(rows) for r, rows in rank_rows.items()}


def _moco_loss_and_grads(batch):
    from mmengine.logging import MessageHub
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    MessageHub.get_current_instance().update_info('max_iters', 10)
    torch.manual_seed(0)
    model = MODELS.build(_tiny_moco_cfg())
    inputs, samples = batch
    losses = model.loss(inputs, samples)
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return total.detach(), losses['equiv_nce'].detach(), grads


def _worker(rank, port, out_dir):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=2)
    try:
        import sslreg  # noqa: F401
        a, b = _loss_problem()
        half = slice(0, 2) if rank == 0 else slice(2, 6)  # 2 images vs 4: uneven tokens
        loss, ga, gb = _loss_and_grads(a[half], b[half], gather=True)
        res = dict(loss=loss, ga=ga, gb=gb)
        _, rank_batches = _moco_batch()
        total, nce, grads = _moco_loss_and_grads(rank_batches[rank])
        res.update(moco_total=total, moco_nce=nce, moco_grads=grads)
        torch.save(res, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_one_process_loss_and_gradients(tmp_path):
    port = _free_port()
    # fork: the children inherit the imported frameworks (spawn re-imports them, ~20 s
    # on a loaded 2-core machine); they set 1 thread before any torch op, so no OpenMP
    # pool is used across the fork.
    mp.start_processes(_worker, args=(port, str(tmp_path)), nprocs=2, join=True,
                       start_method='fork')
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt') for r in (0, 1))

    # the loss alone: ranks hold different token counts
    a, b = _loss_problem()
    loss, ga, gb = _loss_and_grads(a, b, gather=False)
    assert ((r0['loss'] + r1['loss']) / 2).item() == pytest.approx(loss.item(), abs=1e-10)
    # DDP averages gradients over ranks: rank grads / world size = one-process grads
    for got, want in zip(r0['ga'] + r1['ga'], ga):
        torch.testing.assert_close(got / 2, want, rtol=1e-9, atol=1e-12)
    for got, want in zip(r0['gb'] + r1['gb'], gb):
        torch.testing.assert_close(got / 2, want, rtol=1e-9, atol=1e-12)

    # SERMoCoV3 end to end (LayerNorm necks: BatchNorm statistics are per rank on CPU)
    full, _ = _moco_batch()
    total, nce, grads = _moco_loss_and_grads(full)
    assert ((r0['moco_total'] + r1['moco_total']) / 2).item() == pytest.approx(
        total.item(), abs=1e-5)
    assert ((r0['moco_nce'] + r1['moco_nce']) / 2).item() == pytest.approx(nce.item(), abs=1e-5)
    for name, want in grads.items():
        got = (r0['moco_grads'][name] + r1['moco_grads'][name]) / 2
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)

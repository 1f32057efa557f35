"""Bit-exact resume (issue #15): a demo run killed in epoch 2 and resumed with
``tools/train.py --resume`` logs the same losses, iteration for iteration, and ends with
the same accuracy as the run that was never interrupted.

The kill is a real SIGKILL in the middle of epoch 2, so the resume starts from the
epoch-1 checkpoint and replays epoch 2: the sampler order (MMEngine's seed + epoch), the
augmentation (numpy / python ``random`` / torch in the main process: the demos use
``num_workers=0``), ρSIM's token sampling and dropout (torch) must all come back
(:class:`sslreg.hooks.RNGStateHook`, which ``tools/train.py`` adds).
"""
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_tool

pytestmark = pytest.mark.timeout(600)

DEMO = 'configs/demo/resnet18_digits_cub_rhosim_vcreg.py'
BASELINE = 'configs/demo/resnet18_digits_cub_baseline.py'
#: 2 epochs of 8 iterations (256 of the digits), logged every iteration, deterministic.
OPTS = ['train_cfg.max_epochs=2', 'train_dataloader.dataset.indices=256',
        'val_dataloader.dataset.indices=128', 'default_hooks.logger.interval=1',
        'randomness.deterministic=True']
TRAIN_LINE = re.compile(r'Epoch\(train\) \[(\d+)\]\[(\d+)/\d+\](.*)$', re.M)
# what the log prints of the run's values (not of its speed)
VALUE = re.compile(r'(lr|loss\w*|vcreg_\w+|sim_\w+): (\S+)')
KILL_AT = re.compile(r'Epoch\(train\) \[2\]\[3/')


def train_values(log: str):
    """``{(epoch, iteration): {name: printed value}}`` of every training log line."""
    return {(int(e), int(i)): dict(VALUE.findall(rest)) for e, i, rest in TRAIN_LINE.findall(log)}


def accuracies(log: str):
    return re.findall(r'Epoch\(val\) \[(\d+)\]\S* +accuracy/top1: (\S+)', log)


def train_cmd(config, work_dir, *extra, seed=0):
    return [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir), *extra,
            '--cfg-options', *OPTS, f'randomness.seed={seed}']


def run_and_kill(cmd, pattern=KILL_AT, timeout=300):
    """Run ``cmd``, SIGKILL it as soon as its output has a line matching ``pattern``;
    returns the output up to then."""
    env = dict(os.environ, PYTHONWARNINGS='ignore', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if pattern.search(line):
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    out = ''.join(lines)
    assert proc.returncode == -signal.SIGKILL, f'the run was not killed mid-epoch:\n{out[-4000:]}'
    return out


def interrupted_and_resumed(config, work_dir, seed=0):
    """The run killed in epoch 2, then ``--resume``d in the same work dir: both logs."""
    killed = run_and_kill(train_cmd(config, work_dir, seed=seed))
    assert (work_dir / 'epoch_1.pth').exists() and not (work_dir / 'epoch_2.pth').exists()
    resumed = run_tool(*train_cmd(config, work_dir, '--resume', seed=seed))
    assert 'resumed epoch: 1' in resumed
    return killed, resumed


def assert_same_iterations(resumed: dict, reference: dict):
    assert resumed, 'no training line in the resumed run'
    for key, values in resumed.items():
        assert key in reference, f'iteration {key} is not in the reference run'
        assert values == reference[key], f'iteration {key}: {values} != {reference[key]}'


class _Sampled(torch.nn.Module):
    """A module that draws from its own generator (as a regularizer may)."""

    def __init__(self):
        super().__init__()
        self.gen = torch.Generator().manual_seed(7)


def test_states_round_trip_through_a_safe_loaded_checkpoint(tmp_path):
    """Every state the hook keeps, through torch.save and torch.load(weights_only=True),
    sets the generators back: the same numbers are drawn again."""
    import random
    from functools import partial
    from types import SimpleNamespace

    import numpy as np
    from mmengine.dataset import DefaultSampler

    from sslreg.hooks import rng_state_hook as rsh

    model = torch.nn.Sequential(_Sampled())
    loader = torch.utils.data.DataLoader(range(8), sampler=DefaultSampler(range(8), seed=3),
                                         worker_init_fn=partial(print, seed=5))
    runner = SimpleNamespace(model=model, hooks=[], _train_loop=SimpleNamespace(dataloader=loader))

    def draw():
        return (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(),
                np.random.randn(), torch.rand(2, generator=model[0].gen).tolist())

    np.random.randn()  # a cached gaussian in numpy's state
    state = rsh.capture(runner)
    expected = draw()
    torch.save({'rng_state': rsh.to_checkpoint(state)}, tmp_path / 'c.pth')
    saved = torch.load(tmp_path / 'c.pth', weights_only=True)['rng_state']
    assert 'model.0.gen' in saved['generators'] and saved['loader'] == dict(sampler=3, worker=5)
    draw()
    rsh.restore(runner, rsh.from_checkpoint(saved))
    assert draw() == expected
    # a rebuilt loader with other seeds gets the checkpoint's
    other = torch.utils.data.DataLoader(range(8), sampler=DefaultSampler(range(8), seed=9),
                                        worker_init_fn=partial(print, seed=1))
    assert rsh.set_loader_seeds(other, saved['loader'])
    assert rsh.loader_seeds(other) == dict(sampler=3, worker=5)
    assert not rsh.set_loader_seeds(other, saved['loader'])


def test_demo_resumes_bit_exact(small_data, tmp_path):
    reference_log = run_tool(*train_cmd(DEMO, tmp_path / 'whole'))
    reference = train_values(reference_log)
    assert 'loss_sim' in reference[(2, 1)] and 'vcreg_value' in reference[(2, 1)]
    killed, resumed_log = interrupted_and_resumed(DEMO, tmp_path / 'cut')
    # the interrupted run is the same run as the reference until the kill
    assert_same_iterations(train_values(killed), reference)
    resumed = train_values(resumed_log)
    assert sorted(resumed) == [k for k in sorted(reference) if k[0] == 2]
    assert_same_iterations(resumed, reference)
    assert accuracies(resumed_log)[-1] == accuracies(reference_log)[-1]
    # the checkpoint loads with torch's safe loading (weights_only=True)
    ckpt = torch.load(tmp_path / 'cut' / 'epoch_2.pth', weights_only=True)
    assert set(ckpt['rng_state']['ranks'][0]) >= {'torch', 'numpy', 'python'}


def test_baseline_resumes_bit_exact_without_a_seed(small_data, tmp_path):
    """No regularizer and ``seed=None`` (mmpretrain's default_runtime): the resumed run
    takes the checkpoint's seed, for the sampler too, and replays the iterations of
    epoch 2 the killed run had logged."""
    killed, resumed_log = interrupted_and_resumed(BASELINE, tmp_path, seed=None)
    before, after = train_values(killed), train_values(resumed_log)
    replayed = {k: v for k, v in after.items() if k in before}
    assert {k for k in before if k[0] == 2} == set(replayed) and len(replayed) >= 3
    assert_same_iterations(replayed, before)

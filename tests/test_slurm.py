"""tools/slurm_train.sh on a real SLURM cluster: Debian's slurmctld + slurmd + munge,
started on this machine by tools/slurm_localhost.sh (one node, this machine's cores, a
partition "sslreg"), and a 2-task CPU run of the regularized CUB demo through srun and
``--launcher slurm``.

The cluster needs root (and apt-get when the packages are missing). Where it cannot be
set up, the test is SKIPPED with the step that failed and the tail of its output, never
passed; SSLREG_REQUIRE_SLURM=1 turns that skip into a failure (a machine that must have
it). SSLREG_SLURM_INSTALL=0 forbids the apt-get.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch

import sslreg  # noqa: F401  (registers the safe-loading globals for MMEngine checkpoints)
from conftest import ROOT, free_port, run_tool

pytestmark = pytest.mark.timeout(900)

SCRIPT = ROOT / 'tools/slurm_localhost.sh'
PARTITION = 'sslreg'
CONFIG = 'configs/demo/resnet18_digits_cub_rhosim_vcreg.py'
# as tests/test_platform_e2e.py's torchrun run: 64 images, 2 tasks x batch 16 = 2
# iterations per epoch on each task (a 1-process run has 4)
OPTS = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=64',
        'val_dataloader.dataset.indices=32', 'train_dataloader.batch_size=16']
STEPS = {2: 'not root', 3: 'installing slurm/munge with apt-get', 4: 'starting munged',
         5: 'starting slurmctld', 6: 'starting slurmd', 7: 'waiting for the node to be idle'}


def _script(command, state, env, timeout):
    return subprocess.run(['bash', str(SCRIPT), command, str(state)], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope='module')
def slurm_cluster():
    """The running localhost cluster: the environment that points srun at it."""
    def unavailable(reason):
        reason = f'localhost SLURM cluster unavailable: {reason}'
        if os.environ.get('SSLREG_REQUIRE_SLURM') == '1':
            pytest.fail(reason + ' (SSLREG_REQUIRE_SLURM=1)')
        pytest.skip(reason)

    if os.geteuid() != 0:
        unavailable('needs root (slurmd/slurmctld run as root; packages via apt-get)')
    # a short path: munged's unix socket lives in it (108-byte limit)
    state = Path(tempfile.mkdtemp(prefix='sslreg-slurm-'))
    port = os.environ.get('SLURM_LOCALHOST_PORT') or str(free_port(span=2))
    env = dict(os.environ, SLURM_LOCALHOST_PORT=port, SLURM_LOCALHOST_PARTITION=PARTITION)
    try:
        proc = _script('start', state, env, timeout=600)  # apt-get install: ~15 s here
    except subprocess.TimeoutExpired as err:
        proc = subprocess.CompletedProcess(err.cmd, 124, '', f'timed out after {err.timeout} s')
    if proc.returncode != 0:
        _script('stop', state, env, timeout=60)
        shutil.rmtree(state, ignore_errors=True)
        out = (proc.stdout + proc.stderr).strip().splitlines()
        step = STEPS.get(proc.returncode, f'exit status {proc.returncode}')
        unavailable(f'tools/slurm_localhost.sh start failed at: {step}:\n'
                    + '\n'.join(out[-15:]))
    try:
        yield {'SLURM_CONF': str(state / 'slurm.conf'), 'state': state}
    finally:
        _script('stop', state, env, timeout=60)
        shutil.rmtree(state, ignore_errors=True)


def test_slurm_train_two_cpu_tasks(slurm_cluster, small_data, tmp_path):
    env = {'SLURM_CONF': slurm_cluster['SLURM_CONF'], 'GPUS': '0', 'TASKS': '2',
           'CPUS_PER_TASK': '1', 'MASTER_PORT': str(free_port()),
           'OMP_NUM_THREADS': '1', 'OMP_WAIT_POLICY': 'PASSIVE'}
    work = tmp_path / 'work'
    out = run_tool('tools/slurm_train.sh', PARTITION, 'sslreg-slurm-test', CONFIG, work, *OPTS,
                   env=env, timeout=600)

    # the job went through the cluster: 2 tasks, completed with exit code 0. srun returns
    # when the tasks end; slurmctld may still show COMPLETING (epilog, cleanup) for a moment
    for _ in range(60):
        job = subprocess.run(['scontrol', '-o', 'show', 'job'], capture_output=True,
                             text=True, env=dict(os.environ, SLURM_CONF=env['SLURM_CONF'])).stdout
        job = [ln for ln in job.splitlines() if 'JobName=sslreg-slurm-test' in ln]
        if not (len(job) == 1 and 'JobState=COMPLETING' in job[0]):
            break
        time.sleep(0.5)
    assert len(job) == 1, job
    assert 'JobState=COMPLETED' in job[0] and 'ExitCode=0:0' in job[0], job[0]
    assert re.search(rf'Partition={PARTITION}\b', job[0]) and 'NumTasks=2' in job[0], job[0]

    # the rank-0 log, work_dir/<timestamp>/<timestamp>.log; rank 1 writes none
    logs = sorted(work.glob('*/*.log'))
    assert len(logs) == 1 and logs[0].stem == logs[0].parent.name, logs
    log = logs[0].read_text()
    assert 'Distributed launcher: slurm' in log and 'Distributed training: True' in log
    assert 'GPU number: 2' in log  # MMEngine's world size
    assert 'Epoch(train) [1][2/2]' in log, 'not 2 iterations of 2 x 16 images'
    assert 'loss_sim' in log and 'vcreg_value' in log  # the regularizers ran under DDP
    # both tasks' stdout reaches srun's: logging from rank 0 only, each training line once
    train_lines = [ln for ln in out.splitlines() if 'Epoch(train)' in ln]
    assert train_lines and len(train_lines) == len(set(train_lines)), train_lines
    assert 'Epoch(train) [1][2/2]' in out

    # the checkpoint, with plain torch.load (weights-only safe loading)
    ckpt = torch.load(work / 'epoch_1.pth', map_location='cpu')
    assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == 2
    assert any(k.startswith('regularizers.sim.') for k in ckpt['state_dict'])

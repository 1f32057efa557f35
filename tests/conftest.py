import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault('OMP_NUM_THREADS', '2')

import sslreg  # noqa: E402,F401  (registers, applies compat)


@pytest.fixture(scope='session')
def root():
    return ROOT


SMALL = ROOT / 'data' / 'small'


@pytest.fixture(scope='session')
def small_data():
    """data/small, made by tools/data/make_small_datasets.py when missing (seconds)."""
    import subprocess
    subprocess.run([sys.executable, str(ROOT / 'tools/data/make_small_datasets.py'),
                    '--out', str(SMALL)], check=True, cwd=ROOT)
    return SMALL


def run_tool(*args, timeout=900, env=None):
    """Run a tools/ entry point the way a user does; returns its combined output."""
    import subprocess
    cmd = [sys.executable, *map(str, args)] if str(args[0]).endswith('.py') else list(map(str, args))
    full_env = dict(os.environ, PYTHONWARNINGS='ignore', **(env or {}))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f'{" ".join(cmd)} exited {proc.returncode}:\n{out[-6000:]}')
    return out


def free_port(span=1):
    """A TCP port with the ``span - 1`` ports after it also free right now (for a
    launcher's master port, or a daemon's pair of ports); parallel runs then do not clash."""
    import random
    import socket
    for _ in range(200):
        port = random.randint(20000, 60000 - span)
        socks = []
        try:
            for p in range(port, port + span):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(('', p))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return port
    raise RuntimeError('no free TCP port found')


@pytest.fixture(autouse=True, scope='module')
def one_thread_per_module():
    """One intra-op thread for a module's tiny tensors: on 2 cores shared with other
    jobs, two OpenMP threads per process spin against each other and make small steps
    many times slower. A module opts in with
    ``from conftest import one_thread_per_module  # noqa: F401`` (pytest finds fixtures
    among a module's names)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeLogger:
    """What a hook's ``runner.logger.info`` needs, keeping the lines."""

    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(msg)


class FakeRunner:
    """The ``model``, ``logger`` and ``iter`` a hook reads from its runner."""

    def __init__(self, model):
        self.model, self.logger, self.iter = model, FakeLogger(), 0


@pytest.fixture
def mmpretrain_scope():
    """MMEngine's default scope is process-global: a test that builds mmpretrain names
    sets it itself rather than trust what the previous module left (mmdet, mmseg)."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')

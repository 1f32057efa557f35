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

"""tools/gpu_check.py keeps working: its CPU mode (--device cpu --small), run in a fresh
interpreter where OpenMMLab cannot be imported (the finder of
test_core_without_openmmlab.py), gives every row of both tables and a passing gradient
check."""
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from test_core_without_openmmlab import BLOCKER, OPENMMLAB

ROOT = Path(__file__).resolve().parents[1]
MODELS = {'resnet50': 16, 'vit_b_32': 12}  # name: number of blocks
PRECISIONS = ('fp32', 'bf16')
VARIANTS = ('none', 'vcreg-fast', 'vcreg-explicit', 'rhosim')


def test_gpu_check_small_runs_on_cpu_without_openmmlab(tmp_path):
    out_json = tmp_path / 'gpu_check.json'
    argv = ['tools/gpu_check.py', '--device', 'cpu', '--small', '--json', str(out_json)]
    code = BLOCKER + (f'import runpy, sys\nsys.argv = {argv!r}\n'
                      "runpy.run_path('tools/gpu_check.py', run_name='__main__')\n")
    # one thread: two OpenMP threads on two shared, busy cores measured 8x slower
    env = dict(os.environ, SSLREG_TEST_BLOCK=','.join(OPENMMLAB), OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]

    assert out.startswith('### sslreg gpu_check — CPU') and 'torch 2.' in out.splitlines()[0]
    for model, precision, variant in itertools.product(MODELS, PRECISIONS, VARIANTS):
        blocks = 0 if variant == 'none' else MODELS[model]
        assert re.search(rf'^\| {model} \| {precision} \| {variant} \| {blocks} \| 2 \| 64x64 \|',
                         out, re.M), (model, precision, variant, out)
    grad_rows = re.findall(r'^\| (fp32|bf16) \| (conv map|tokens) \|.*\| (PASS|FAIL) \|$',
                           out, re.M)
    assert sorted(grad_rows) == sorted(
        (p, t, 'PASS') for p in PRECISIONS for t in ('conv map', 'tokens')), out
    assert 'OpenMMLab modules loaded: none.' in out
    assert 'Losses finite: yes. Gradient check: PASS.' in out

    data = json.loads(out_json.read_text())
    assert data['gradient_check_passed'] and data['losses_finite']
    assert data['openmmlab_loaded'] == []
    rows = {(r['model'], r['precision'], r['variant']): r for r in data['overhead']}
    assert set(rows) == set(itertools.product(MODELS, PRECISIONS, VARIANTS))
    for (model, precision, variant), row in rows.items():
        assert row['median_s'] > 0 and row['time_ratio'] > 0 and row['memory_ratio'] > 0
        if variant == 'none':
            assert row['time_ratio'] == 1 and row['memory_ratio'] == 1
        else:  # the regularizers keep more for backward (ρSIM: its heads, too)
            assert row['memory_ratio'] > 1, row
    for row in data['gradient_check']:
        assert row['fast_vs_explicit'] <= row['tolerance'], row

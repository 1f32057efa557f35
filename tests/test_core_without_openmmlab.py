"""The core (sslreg.losses, sslreg.regularizers) on plain PyTorch, OpenMMLab absent.

Each case runs in a fresh interpreter whose ``sys.meta_path`` starts with a finder that
refuses the OpenMMLab packages the way a missing package fails (ModuleNotFoundError
with ``.name`` set), so this machine's full install stands in for one without them.
:data:`SNIPPET` is the README's "Plain PyTorch (no OpenMMLab)" example, character for
character (:func:`test_readme_shows_this_snippet` keeps them in sync).
"""
import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPENMMLAB = ('mmengine', 'mmcv', 'mmpretrain', 'mmseg', 'mmdet')

#: Prepended to a child's code: refuses the top-level packages in $SSLREG_TEST_BLOCK
#: (comma-separated; default: all of OpenMMLab) and whatever lies below them.
BLOCKER = textwrap.dedent('''\
    import os as _os, sys as _sys
    _BLOCKED = tuple(_os.environ.get('SSLREG_TEST_BLOCK',
                                     'mmengine,mmcv,mmpretrain,mmseg,mmdet').split(','))
    class _RefuseOpenMMLab:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.partition('.')[0] in _BLOCKED:
                raise ModuleNotFoundError(f'No module named {name!r} (refused by the test)',
                                          name=name)
            return None
    _sys.meta_path.insert(0, _RefuseOpenMMLab)
''')

SNIPPET = '''\
import torch
import torchvision
from torch import nn

from sslreg.regularizers import RhoSIM, VCReg, collecting, pop_terms, probing

torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=10)
regs = nn.ModuleDict({
    'sim': RhoSIM(layers='layer*.*', rho=0.2, preset='paper', loss_weight=5e-3),
    'vcreg': VCReg(layers='layer*.*', alpha=0.64, beta=0.04, cov_scale='algorithm1'),  # fast
})
for reg in regs.values():
    print('attached to', reg.attach(model))    # ['layer1.0', 'layer1.1', ..., 'layer4.1']
with torch.no_grad(), probing([regs['sim']]):  # one forward: ρSIM sizes its heads
    model.eval()(torch.zeros(1, 3, 64, 64))
optimizer = torch.optim.SGD([*model.parameters(), *regs.parameters()], lr=0.05, momentum=0.9)

model.train(), regs.train()
x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))  # your DataLoader here
for step in range(10):
    with collecting(regs.values()):            # taps record only inside this block
        logits = model(x)
    terms = pop_terms(regs)                    # {'loss_sim': ..., 'vcreg_value': ...}
    loss = nn.functional.cross_entropy(logits, y) + terms['loss_sim']
    optimizer.zero_grad()
    loss.backward()                            # VCReg (fast) adds its gradient here
    optimizer.step()
    print(f"step {step}: loss {loss.item():.4f}  sim {terms['loss_sim'].item():.4f}  "
          f"vcreg {terms['vcreg_value'].item():.4f}")
'''

#: Run after SNIPPET, in its namespace: the gradients of the last step.
CHECKS = textwrap.dedent('''\
    import sys
    import sslreg
    assert not sslreg.openmmlab_available
    loaded = sorted(m for m in sys.modules if m.partition('.')[0] in _BLOCKED)
    assert not loaded, loaded
    # ρSIM: the prediction side (H2, G) of every block learns, the target side H1 gets
    # no gradient (stop-gradient of Eq. 4, frozen), and the backbone is reached
    assert sorted(regs['sim'].heads) == [n.replace('.', '__') for n in regs['sim'].layer_names]
    for key, head in regs['sim'].heads.items():
        for p in [*head.output_proj.parameters(), *head.predictor.parameters()]:
            assert p.grad is not None and p.grad.abs().sum() > 0, key
        assert all(p.grad is None for p in head.target_proj.parameters()), key
    for name in ('conv1', 'layer1.0.conv1', 'layer4.1.conv2'):
        grad = model.get_submodule(name).weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # VCReg (fast): its backward added a gradient at the 8 tapped blocks
    added, downstream = regs['vcreg'].last_grad_norms
    assert regs['vcreg'].last_grad_count == 8 and added > 0 and downstream > 0
    print('CHECKS-OK')
''')


def run_child(code: str, block: str = ','.join(OPENMMLAB), timeout: int = 120) -> str:
    """Run ``BLOCKER + code`` in a fresh interpreter at the repo root; its output."""
    # one thread: two OpenMP threads on two shared, busy cores measured 8x slower
    env = dict(os.environ, SSLREG_TEST_BLOCK=block, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-c', BLOCKER + code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


def test_losses_and_regularizers_import_nothing_of_openmmlab():
    """Statically: no import statement (top level or inside a function) names one."""
    offending = []
    for path in sorted((ROOT / 'sslreg').glob('[lr]*/*.py')):
        if path.parent.name not in ('losses', 'regularizers'):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ''] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            offending += [f'{path.relative_to(ROOT)}:{node.lineno} {n}' for n in names
                          if n.partition('.')[0] in OPENMMLAB]
    assert not offending, offending


def test_plain_pytorch_training_without_openmmlab():
    out = run_child(SNIPPET + CHECKS)
    assert 'CHECKS-OK' in out
    steps = [tuple(map(float, m)) for m in re.findall(
        r'step \d+: loss (\S+)  sim (\S+)  vcreg (\S+)', out)]
    assert len(steps) == 10
    assert all(v == v and abs(v) != float('inf') for row in steps for v in row), steps
    loss, sim, vcreg = zip(*steps)
    assert loss[-1] < 0.5 * loss[0], loss       # the step trains (one fixed batch)
    assert vcreg[-1] < 0.9 * vcreg[0], vcreg    # VCReg's gradient lowers its loss
    assert all(0 < s < 1 for s in sim), sim
    assert out.count("attached to ['layer1.0', 'layer1.1', 'layer2.0'") == 2


def test_import_sslreg_without_openmmlab_says_what_to_install():
    out = run_child(textwrap.dedent('''\
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import sslreg
            import sslreg.losses, sslreg.regularizers
        # no warning: the core is all that was used
        assert not [w for w in caught if 'OpenMMLab' in str(w.message)], caught
        assert sslreg.openmmlab_available is False and sslreg.__version__
        assert sslreg.openmmlab_error.name == 'mmengine'
        attempts = {
            'import sslreg.models': lambda: __import__('sslreg.models'),
            'from sslreg import hooks': lambda: exec('from sslreg import hooks'),
            'sslreg.datasets': lambda: sslreg.datasets,
            'from sslreg.models import RegularizedModel':
                lambda: exec('from sslreg.models import RegularizedModel'),
            'import sslreg.launch': lambda: __import__('sslreg.launch'),
        }
        for what, attempt in attempts.items():
            try:
                attempt()
            except ModuleNotFoundError as err:
                msg = str(err)
                assert err.name == 'mmengine', (what, err.name)
                assert 'needs OpenMMLab' in msg and 'tools/install.sh' in msg, msg
                assert 'pip install mmengine==0.10.7 mmpretrain==1.2.0' in msg, msg
                assert 'sslreg.losses and sslreg.regularizers need torch only' in msg, msg
                print(what, '->', msg)
            else:
                raise AssertionError(f'{what} did not raise')
        try:
            sslreg.no_such_name
        except AttributeError:
            pass
        print('MESSAGE-OK')
    '''))
    assert 'MESSAGE-OK' in out, out
    assert "import sslreg.models -> sslreg.models needs OpenMMLab, and 'mmengine'" in out


def test_partial_openmmlab_stack_warns_and_keeps_the_core():
    """mmengine present, mmseg missing: a config's custom_imports would expect the names
    registered, so the torch-only mode says so with a warning."""
    out = run_child(textwrap.dedent('''\
        import sys, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import sslreg.regularizers
        import sslreg
        found = [w for w in caught if issubclass(w.category, sslreg.OpenMMLabNotInstalledWarning)]
        assert len(found) == 1, [str(w.message) for w in caught]
        msg = str(found[0].message)
        assert "'mmseg' is not installed" in msg and 'NOT registered' in msg, msg
        assert 'tools/install.sh' in msg
        assert not sslreg.openmmlab_available and 'mmengine' in sys.modules
        try:
            import sslreg.models
        except ModuleNotFoundError as err:
            assert err.name == 'mmseg' and 'tools/install.sh' in str(err), err
        else:
            raise AssertionError('sslreg.models imported without mmseg')
        print('PARTIAL-OK')
    '''), block='mmseg', timeout=300)
    assert 'PARTIAL-OK' in out


def test_other_import_errors_are_not_swallowed():
    """Only a missing OpenMMLab package selects the torch-only mode: a missing
    dependency of mmengine (here addict) is raised as it is."""
    proc = subprocess.run(
        [sys.executable, '-c', BLOCKER + 'import sslreg'], cwd=ROOT, capture_output=True,
        text=True, timeout=120, env=dict(os.environ, SSLREG_TEST_BLOCK='addict'))
    assert proc.returncode != 0
    assert "ModuleNotFoundError: No module named 'addict'" in proc.stderr, proc.stderr[-3000:]


def test_readme_shows_this_snippet():
    """Once the README has the section, its first python block is SNIPPET."""
    readme = (ROOT / 'README.md').read_text()
    heading = '## Plain PyTorch (no OpenMMLab)'
    if heading not in readme:
        pytest.skip('README has no "Plain PyTorch (no OpenMMLab)" section yet')
    block = re.search(r'```python\n(.*?)```', readme.split(heading, 1)[1], re.S)
    assert block and block.group(1) == SNIPPET, 'README snippet and tests/SNIPPET differ'

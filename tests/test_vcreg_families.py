"""The VCReg paper's experiment families (issue #16): the DeCov baseline, VICReg as an SSL
algorithm, the long-tail family (Table 3) and the hierarchical family (Table 5), each on
the small real data through the tools a user runs.

- DeCov: the loss equals Cogswell et al.'s formula computed directly in float64, its
  autograd gradient the closed form, and the regularizer adds ``loss_decov`` through
  RegularizerHook (the way the ResNet-50 config uses it).
- VICReg: ``vicreg_loss`` equals a float64 re-derivation of the reference code (and
  lightly's ``VICRegLoss``, which computes the same), and of the paper's formula for
  ``scaling='paper'``, values and gradients; the algorithm's loss dict is that loss of its
  embeddings; ``vicreg_vcreg_r18_digits.py`` trains through tools/train.py.
- Long tail: ``resnet32_vcreg_1xb256-100e_cifar10-lt-r10.py`` trains an epoch on
  digits_cifar10 (UncheckedCIFAR10 via --cfg-options) through tools/train.py.
- Hierarchical: ``convnext-atto_vcreg_...cifar100-coarse.py`` trains on digits_cifar100's
  superclass labels, then the probe protocol runs through tools/linear_eval.py on the fine
  labels, with the checkpoint's VCReg demean state loaded into the evaluated backbone.

Every new config builds in tests/test_configs.py (it enumerates configs/; the test below
checks that it covers them).
"""
import copy
import importlib.util
import re

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from conftest import ROOT, run_tool
from sslreg.losses import decov_loss, vicreg_loss, vicreg_terms

init_default_scope('mmpretrain')
VCREG = ROOT / 'configs/vcreg'
LONG_TAIL = VCREG / 'long-tail'
HIER = VCREG / 'hierarchical'
TOOL_ENV = {'OMP_WAIT_POLICY': 'PASSIVE', 'OMP_NUM_THREADS': '1'}


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


@pytest.fixture(autouse=True)
def _scope(mmpretrain_scope):
    """Every test here builds mmpretrain names (conftest.mmpretrain_scope)."""


@pytest.fixture
def no_yapf(monkeypatch):
    """MMEngine formats the merged config with yapf whenever it logs or saves it (seconds
    each); the unformatted text is the same valid Python."""
    import mmengine.config.config as mm_config
    monkeypatch.setattr(mm_config, 'FormatCode', lambda text, **kwargs: (text, False))


def _features(n, d, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=gen, dtype=dtype) / d ** 0.5
    scale = torch.linspace(0.3, 2.0, d, dtype=dtype)  # some channels' std below 1
    return (torch.randn(n, d, generator=gen, dtype=dtype) @ mix + 0.5) * scale


# --------------------------------------------------------------------------------- DeCov


def test_decov_equals_the_direct_float64_formula_and_its_gradient():
    h = _features(24, 9).requires_grad_(True)
    n = h.shape[0]
    mu = h.detach().mean(0)
    C = (h.detach() - mu).T @ (h.detach() - mu) / n  # the paper's 1/N covariance
    direct = 0.5 * (sum(C[i, j] ** 2 for i in range(9) for j in range(9))
                    - sum(C[i, i] ** 2 for i in range(9)))
    loss = decov_loss(h)
    assert float(loss.detach()) == pytest.approx(float(direct), rel=1e-12)
    assert loss.dtype == torch.float64
    grad, = torch.autograd.grad(loss, h)
    # dL/dh = (2/N) (h - mu) C_off (C symmetric; the mean term vanishes: centred rows)
    off = C - torch.diag(torch.diagonal(C))
    torch.testing.assert_close(grad, 2 / n * (h.detach() - mu) @ off, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: decov_loss(x), (h[:6, :4].detach().clone()
                                                              .requires_grad_(True),))
    # maps: every position is a sample, as VCReg reads them
    x = torch.randn(3, 5, 4, 2, dtype=torch.float64)
    assert float(decov_loss(x)) == pytest.approx(
        float(decov_loss(x.permute(0, 2, 3, 1).reshape(-1, 5))), rel=1e-12)
    unbiased = decov_loss(h.detach(), unbiased=True)
    assert float(unbiased) == pytest.approx(float(direct) * (n / (n - 1)) ** 2, rel=1e-12)
    with pytest.raises(ValueError, match='at least 2 samples'):
        decov_loss(torch.randn(1, 4))


from conftest import FakeRunner as _FakeRunner  # noqa: E402


def _tiny_classifier(num_classes=10):
    return MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='CifarResNet', depth=8),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=64,
                  loss=dict(type='CrossEntropyLoss'))))


def test_decov_regularizer_through_the_hook_adds_its_weighted_loss():
    from mmpretrain.structures import DataSample
    from sslreg.hooks import RegularizerHook
    torch.manual_seed(0)
    model = _tiny_classifier()
    hook = RegularizerHook(regularizers=dict(decov=dict(type='DeCov', layers='neck',
                                                        loss_weight=0.3)))
    runner = _FakeRunner(model)
    hook.before_train(runner)
    assert runner.logger.lines == ['Regularizer decov (DeCov) on 1 layer: neck']
    x = torch.randn(6, 3, 16, 16)
    samples = [DataSample().set_gt_label(i % 10) for i in range(6)]
    losses = model(x, samples, mode='loss')
    with torch.no_grad():
        pooled = model.neck(model.backbone(x))[0]
    assert losses['loss_decov'].item() == pytest.approx(0.3 * float(decov_loss(pooled)),
                                                        rel=1e-5)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert model.backbone.layer3[0].conv1.weight.grad.abs().sum() > 0
    hook.after_train_iter(runner, 0)
    assert 'decov: ' in runner.logger.lines[-1]  # its gradient share, once
    model.eval()
    model(x, mode='tensor')  # no term outside a training forward
    assert hook.regularizers['decov'].pop_terms() == {}


# -------------------------------------------------------------------------------- VICReg


def _off_diagonal(m):
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def _reference_vicreg(x, y, scaling='code'):
    """facebookresearch/vicreg main_vicreg.py's VICReg.forward after the projector (one
    process; lightly's VICRegLoss is the same arithmetic), or the paper's Eq. (Sec. 3)."""
    n, d = x.shape
    repr_loss = F.mse_loss(x, y) if scaling == 'code' else ((x - y) ** 2).sum(1).mean()
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    half = 2 if scaling == 'code' else 1
    std_loss = torch.mean(F.relu(1 - std_x)) / half + torch.mean(F.relu(1 - std_y)) / half
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = _off_diagonal(cov_x).pow(2).sum() / d + _off_diagonal(cov_y).pow(2).sum() / d
    return 25 * repr_loss + 25 * std_loss + 1 * cov_loss, (repr_loss, std_loss, cov_loss)


@pytest.mark.parametrize('scaling', ['code', 'paper'])
def test_vicreg_loss_equals_the_reference_formula_in_float64(scaling):
    a = _features(32, 12, seed=1).requires_grad_(True)
    b = (a.detach() + 0.3 * _features(32, 12, seed=2)).requires_grad_(True)
    ref, ref_terms = _reference_vicreg(a, b, scaling)
    ours = vicreg_loss(a, b, scaling=scaling)
    terms = vicreg_terms(a, b, scaling=scaling)
    assert 0 < ref_terms[1].item() and ours.dtype == torch.float64
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    for mine, theirs in zip(terms, ref_terms):
        assert mine.item() == pytest.approx(theirs.item(), rel=1e-12)
    g_ours = torch.autograd.grad(ours, (a, b))
    g_ref = torch.autograd.grad(ref, (a, b))
    for mine, theirs in zip(g_ours, g_ref):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match='scaling'):
        vicreg_loss(a, b, scaling='lightly')


def test_vicreg_algorithm_returns_the_loss_of_its_embeddings():
    cfg = Config.fromfile(str(VCREG / 'ssl/vicreg_r18_digits.py'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(base_channels=8, stem_channels=8)
    model_cfg.neck.update(in_channels=64, hid_channels=32, out_channels=16)
    model_cfg.data_preprocessor = cfg.data_preprocessor
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    assert type(model).__name__ == 'VICReg' and model.head is None
    views = [torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)]
    losses = model(views, mode='loss')
    assert set(losses) == {'loss_invariance', 'loss_variance', 'loss_covariance'}
    z_a, z_b = model.embed(views[0]), model.embed(views[1])
    inv, var, cov = vicreg_terms(z_a, z_b)
    for key, value in (('invariance', 25 * inv), ('variance', 25 * var), ('covariance', cov)):
        assert losses[f'loss_{key}'].item() == pytest.approx(value.item(), rel=1e-5)
    with pytest.raises(ValueError, match='no head'):
        MODELS.build(dict(model_cfg, head=dict(type='ContrastiveHead')))


def test_vicreg_vcreg_trains_on_the_digits_through_train_py(small_data, tmp_path):
    log = run_tool('tools/train.py', VCREG / 'ssl/vicreg_vcreg_r18_digits.py', '--work-dir',
                   tmp_path, '--quiet', '--cfg-options', 'train_dataloader.dataset.indices=64',
                   'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1',
                   timeout=300, env=TOOL_ENV)
    for key in ('loss_invariance', 'loss_variance', 'loss_covariance'):
        values = [float(v) for v in re.findall(key + r': (-?[\d.]+)', log)]
        assert len(values) >= 2 and all(v == v for v in values), key  # 2 iterations, finite
    assert 'Regularizer vcreg (VCReg) on 8 layers' in log
    assert (tmp_path / 'epoch_1.pth').is_file()


# ------------------------------------------------------------------------------ long tail


def test_every_family_config_is_covered_by_test_configs():
    spec = importlib.util.spec_from_file_location('tc', ROOT / 'tests/test_configs.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ours = sorted(p for d in (LONG_TAIL, HIER, VCREG / 'ssl') for p in d.glob('*.py'))
    ours += [VCREG / 'vit-base-p32_vcreg_64xb64_in1k.py', VCREG / 'resnet50_decov_8xb32_in1k.py']
    assert len(ours) == 12 + 2 + 5 + 2
    assert set(ours) <= set(module.CONFIGS)


def test_long_tail_configs_follow_the_recipe():
    for ds, classes, lr in (('cifar10', 10, 0.016), ('cifar100', 100, 0.008)):
        for r in (10, 50, 100):
            base = Config.fromfile(str(LONG_TAIL / f'resnet32_1xb256-100e_{ds}-lt-r{r}.py'))
            reg = Config.fromfile(str(LONG_TAIL / f'resnet32_vcreg_1xb256-100e_{ds}-lt-r{r}.py'))
            data = base.train_dataloader
            assert (data.batch_size, data.dataset.type, data.dataset.imbalance_factor,
                    data.dataset.dataset.type) == (256, 'LongTailDataset', r, ds.upper())
            assert base.val_dataloader.dataset.split == 'test'  # balanced test split
            assert base.optim_wrapper.optimizer == dict(type='AdamW', lr=lr, weight_decay=0.05)
            assert base.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.0)
            assert base.train_cfg.max_epochs == 100
            assert [s.type for s in base.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
            assert base.param_scheduler[0].end == 10 == base.param_scheduler[1].begin
            assert (base.model.backbone, base.model.head.num_classes) == (
                dict(type='CifarResNet', depth=32), classes)
            assert reg.model.architecture == base.model
            assert reg.model.regularizers.vcreg.layers == 'backbone.layer*.*'
            assert reg.train_dataloader == base.train_dataloader


def test_long_tail_vcreg_trains_on_digits_cifar10_through_train_py(small_data, tmp_path):
    root = small_data / 'digits_cifar10'
    log = run_tool('tools/train.py', LONG_TAIL / 'resnet32_vcreg_1xb256-100e_cifar10-lt-r10.py',
                   '--work-dir', tmp_path, '--quiet', '--cfg-options',
                   'train_dataloader.dataset.dataset.type=UncheckedCIFAR10',
                   f'train_dataloader.dataset.dataset.data_root={root}',
                   'val_dataloader.dataset.type=UncheckedCIFAR10',
                   f'val_dataloader.dataset.data_root={root}',
                   'train_dataloader.batch_size=32', 'train_dataloader.num_workers=0',
                   'val_dataloader.num_workers=0', 'train_cfg.max_epochs=1',
                   'train_cfg.val_interval=1', timeout=300, env=TOOL_ENV)
    from sslreg.datasets import long_tail_counts
    counts = long_tail_counts(50, 10, 10)
    assert f'{sum(counts)} of 500 images, per class {counts}' in log
    assert 'Regularizer vcreg (VCReg) on 15 layers' in log
    assert 'accuracy/top1' in log and (tmp_path / 'epoch_1.pth').is_file()


# --------------------------------------------------------------------------- hierarchical


@pytest.fixture(scope='module')
def linear_eval_tool():
    spec = importlib.util.spec_from_file_location('linear_eval', ROOT / 'tools/linear_eval.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hierarchical_pretrain_on_superclasses_then_the_fine_label_probe(
        small_data, tmp_path, no_yapf, linear_eval_tool):
    from sslreg.launch import build_runner, default_collate_for_mmpretrain, load_config, \
        set_work_dir
    config = HIER / 'convnext-atto_vcreg_1xb256-100e_cifar100-coarse.py'
    root = small_data / 'digits_cifar100'
    options = {'train_dataloader.dataset.data_root': str(root),
               'train_dataloader.dataset.check_md5': False,
               'val_dataloader.dataset.data_root': str(root),
               'val_dataloader.dataset.check_md5': False,
               'test_dataloader.dataset.data_root': str(root),
               'test_dataloader.dataset.check_md5': False,
               'train_dataloader.batch_size': 64, 'train_dataloader.num_workers': 0,
               'val_dataloader.num_workers': 0, 'test_dataloader.num_workers': 0,
               'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1}
    cfg = load_config(str(config), options)
    assert cfg.model.architecture.head.num_classes == 20 == cfg.data_preprocessor.num_classes
    set_work_dir(cfg, str(config), str(tmp_path / 'pretrain'))
    default_collate_for_mmpretrain(cfg)
    runner = build_runner(cfg, 'none')
    coarse = set(runner.train_dataloader.dataset.get_gt_labels().tolist())
    assert len(coarse) == 9 and max(coarse) < 20  # the digits' superclasses (6, 7 share one)
    runner.train()
    assert 0 <= runner.message_hub.get_scalar('val/accuracy/top1').current() <= 100
    ckpt = tmp_path / 'pretrain' / 'epoch_1.pth'
    assert ckpt.is_file()

    # the probe's backbone runs with the trained demean layers (running means loaded)
    tool = linear_eval_tool
    pre = Config.fromfile(str(config))
    backbone, _, where = tool.build_backbone(pre, str(ckpt))
    assert where == 'architecture.backbone'
    full = MODELS.build(copy.deepcopy(pre.model))
    state = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    full.load_state_dict(state, strict=True)
    assert any(v.abs().sum() > 0 for k, v in state.items() if 'running_mean__' in k)
    backbone.eval(), full.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[0], full.architecture.backbone(x)[0])

    result = tool.main([str(config), str(ckpt), '--protocol-config',
                        str(ROOT / 'configs/eval/vcreg/vcreg_hierarchical_linear_100e_digits.py'),
                        '--work-dir', str(tmp_path / 'probe'), '--epochs', '3'])
    assert result['protocol'] == 'vcreg_hierarchical_linear_100e_digits'
    assert (result['optimizer'], result['lr'], result['weight_decay'], result['batch_size'],
            result['standardize'], result['label_fraction']) == ('adamw', 0.016, 0.05, 256,
                                                                 False, 1.0)
    assert (result['num_train'], result['num_val'], result['feature_dim']) == (500, 200, 320)
    assert 0 <= result['top1'] <= 100
    assert (tmp_path / 'probe' / 'linear_eval_vcreg_hierarchical_linear_100e_digits.json').is_file()


def test_hierarchical_probe_protocol_is_the_papers(linear_eval_tool):
    real, data = linear_eval_tool.load_protocol(
        str(ROOT / 'configs/eval/vcreg/vcreg_hierarchical_linear_100e.py'))
    assert (real['epochs'], real['lr'], real['optimizer'], real['weight_decay'],
            real['batch_size'], real['labels'], real['mode']) == (
        100, 0.016, 'adamw', 0.05, 256, '100%', 'frozen')
    assert data['train'] == dict(type='CIFAR100', data_root='data/cifar100', split='train')
    assert data['val']['split'] == 'test'
    twin, twin_data = linear_eval_tool.load_protocol(
        str(ROOT / 'configs/eval/vcreg/vcreg_hierarchical_linear_100e_digits.py'))
    assert {k: v for k, v in twin.items() if k not in ('name', 'dataset')} == {
        k: v for k, v in real.items() if k not in ('name', 'dataset')}
    assert twin_data['train']['type'] == 'UncheckedCIFAR100'


def test_probe_optimizer_option():
    from sslreg.evaluation.linear_probe import make_optimizer, train_linear_classifier
    params = [torch.nn.Parameter(torch.zeros(3))]
    adamw = make_optimizer('adamw', params, 0.016, momentum=0.9, weight_decay=0.05)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults['weight_decay'] == 0.05
    assert type(make_optimizer('sgd', params, 0.1)) is torch.optim.SGD
    with pytest.raises(ValueError, match='optimizer must be one of'):
        make_optimizer('lars', params, 0.1)
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 5, generator=gen) + 3 * F.one_hot(y, 5).float()
    clf = train_linear_classifier(x, y, 3, epochs=30, lr=0.016, batch_size=16,
                                  weight_decay=0.05, standardize=False, optimizer='adamw')
    assert (clf(x).argmax(1) == y).float().mean() > 0.9


def _imagenet_step(config: str, inputs, samples):
    """One optimizer step of a shipped ImageNet config's model, as built from the config
    (its own optimizer wrapper); returns the step's log variables."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(str(VCREG / config))
    if cfg.get('data_preprocessor'):  # as MMEngine's Runner.build_model does
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    logs = model.train_step(dict(inputs=inputs, data_samples=samples), wrapper)
    return {k: torch.as_tensor(v).detach() for k, v in logs.items()}


@pytest.mark.parametrize('config', ['vit-base-p32_vcreg_64xb64_in1k.py',
                                    'ssl/simclr_resnet50_vcreg_16xb256-coslr-200e_in1k.py'])
def test_imagenet_vcreg_families_train_a_step_at_224px(config):
    """The ViT-B/32 and SimCLR + VCReg pre-training configs (no small-data twin: their
    ImageNet pipelines and 224 px probe) train one step of 2 images each, VCReg on every
    block included, with finite losses."""
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(0)
    image = lambda: torch.randint(0, 256, (2, 3, 224, 224), generator=gen).float()  # noqa: E731
    if 'simclr' in config:
        inputs, samples = [image(), image()], [DataSample() for _ in range(2)]
    else:
        inputs = image()
        samples = [DataSample().set_gt_label(c) for c in (3, 7)]
    logs = _imagenet_step(config, inputs, samples)
    assert 'vcreg_value' in logs and 'loss_task' in logs, sorted(logs)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in logs.values())
    # fast mode: VCReg acts in the backward only, the logged total is the task loss
    assert float(logs['loss']) == pytest.approx(float(logs['loss_task']), rel=1e-6)

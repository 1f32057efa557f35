"""The papers' evaluation protocols (tools/linear_eval.py --protocol-config configs/eval/*.py):
SER's last-4 [CLS] linear probe, MCR's 1% / 10% semi-supervised and 5-NN, SidAE's 1% / 10% /
100% labels -- each checked against a direct computation on a toy (forward hooks, sklearn,
per-class counts), and each run by the tool on the digits."""
import importlib.util

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import ROOT
from sslreg.evaluation.knn import knn_predict, knn_top1
from sslreg.evaluation.linear_probe import (cls_block_indices, label_subset, last_blocks_cls,
                                            per_class_count)

init_default_scope('mmpretrain')
EVAL = ROOT / 'configs/eval'
SMALL_RESNET = ['model.algorithm.backbone.base_channels=8',
                'model.algorithm.backbone.stem_channels=8']


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('linear_eval', ROOT / 'tools/linear_eval.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------- 5-NN vs sklearn


def _toy(seed=0, n_train=300, n_test=200, dim=8, classes=7):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=gen, dtype=torch.float64)
    y_train = torch.randint(classes, (n_train,), generator=gen)
    x_train = centres[y_train] + 1.5 * torch.randn(n_train, dim, generator=gen, dtype=torch.float64)
    y_test = torch.randint(classes, (n_test,), generator=gen)
    x_test = centres[y_test] + 1.5 * torch.randn(n_test, dim, generator=gen, dtype=torch.float64)
    return x_train, y_train, x_test, y_test


@pytest.mark.parametrize('metric', ['cosine', 'euclidean'])
def test_5nn_majority_equals_sklearn(metric):
    from sklearn.neighbors import KNeighborsClassifier
    x_train, y_train, x_test, y_test = _toy()
    ours = knn_predict(x_train, y_train, x_test, k=5, metric=metric, vote='majority')
    ref = KNeighborsClassifier(n_neighbors=5, metric=metric, algorithm='brute').fit(
        x_train.numpy(), y_train.numpy()).predict(x_test.numpy())
    assert ours.tolist() == ref.tolist()
    # tied votes (2-2-1 among 7 overlapping classes) occur and are broken alike
    model = KNeighborsClassifier(n_neighbors=5, metric=metric, algorithm='brute').fit(
        x_train.numpy(), y_train.numpy())
    neighbours = model.kneighbors(x_test.numpy(), return_distance=False)
    votes = torch.stack([torch.bincount(y_train[row], minlength=7)
                         for row in torch.from_numpy(neighbours)])
    assert ((votes == votes.max(1, keepdim=True).values).sum(1) > 1).any()
    if metric == 'cosine':  # = Euclidean on L2-normalized features
        unit = knn_predict(torch.nn.functional.normalize(x_train, dim=1), y_train,
                           torch.nn.functional.normalize(x_test, dim=1), k=5, metric='euclidean')
        assert torch.equal(unit, ours)
    acc = knn_top1(x_train, y_train, x_test, y_test, k=5, metric=metric)
    assert acc == pytest.approx(100 * float(np.mean(ref == y_test.numpy())))


def test_weighted_knn_equals_sklearn_with_instdisc_weights():
    from sklearn.neighbors import KNeighborsClassifier
    x_train, y_train, x_test, _ = _toy(seed=1)
    ours = knn_predict(x_train, y_train, x_test, k=20, vote='weighted', temperature=0.07)
    ref = KNeighborsClassifier(n_neighbors=20, metric='cosine', algorithm='brute',
                               weights=lambda d: np.exp((1 - d) / 0.07)).fit(
        x_train.numpy(), y_train.numpy()).predict(x_test.numpy())
    assert ours.tolist() == ref.tolist()
    with pytest.raises(ValueError):
        knn_predict(x_train, y_train, x_test, vote='weighted', metric='euclidean')


def test_knn_ranks_float32_features_by_their_exact_similarity():
    """Two neighbours 5e-9 apart in cosine: float32 scores tie them, the float64 re-scoring
    of the candidates (and sklearn) does not."""
    from sklearn.neighbors import KNeighborsClassifier
    train = torch.tensor([[1, 2e-4], [1, 1e-4], [-1, 0], [0, 1]], dtype=torch.float32)
    labels = torch.tensor([1, 0, 2, 3])
    query = torch.tensor([[1, 0]], dtype=torch.float32)
    assert (torch.nn.functional.normalize(train[:2], dim=1) @ query.T).unique().numel() == 1
    ref = KNeighborsClassifier(n_neighbors=1, metric='cosine', algorithm='brute').fit(
        train.double().numpy(), labels.numpy()).predict(query.double().numpy())
    assert knn_predict(train, labels, query, k=1).tolist() == ref.tolist() == [0]


# --------------------------------------------------------------- last-4 [CLS] vs forward hooks


def _hook_cls(backbone, x, num_blocks=4):
    """[CLS] token (index 0) of the last ``num_blocks`` blocks' outputs, read by forward hooks;
    the final LayerNorm on the last one, as mmpretrain does before formatting it."""
    seen = []
    handles = [blk.register_forward_hook(lambda m, i, o: seen.append(o[:, 0]))
               for blk in backbone.layers[-num_blocks:]]
    try:
        backbone(x)
    finally:
        for h in handles:
            h.remove()
    return seen[:-1] + [backbone.ln1(seen[-1])]


@pytest.mark.parametrize('kind', ['LateClsViT', 'VisionTransformer'])
def test_last4_cls_equals_forward_hooks(kind):
    from mmengine.registry import MODELS
    arch = dict(embed_dims=32, num_layers=6, num_heads=2, feedforward_channels=64)
    extra = dict(cls_insert_layer=2) if kind == 'LateClsViT' else {}
    torch.manual_seed(0)
    backbone = MODELS.build(dict(type=kind, arch=arch, img_size=32, patch_size=8, **extra))
    backbone.init_weights()
    backbone.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        feats = last_blocks_cls(backbone, x)
        hooked = _hook_cls(backbone, x)
        dino = last_blocks_cls(backbone, x, norm_each=True)
    assert feats.shape == (3, 4 * 32)
    assert torch.equal(feats, torch.cat(hooked, dim=1))
    # the last block's token is the backbone's own out_type='cls_token' output
    assert torch.equal(feats[:, -32:], backbone(x)[-1])
    # norm_each (DINO's get_intermediate_layers): the final LayerNorm on all four
    assert torch.allclose(dino, torch.cat([backbone.ln1(t) for t in hooked[:-1]] + hooked[-1:],
                                          dim=1))
    assert backbone.out_indices == [5] and backbone.out_type == 'cls_token'  # restored


def test_last4_cls_refuses_blocks_without_a_processed_cls_token():
    from mmengine.registry import MODELS
    arch = dict(embed_dims=32, num_layers=6, num_heads=2, feedforward_channels=64)
    late = MODELS.build(dict(type='LateClsViT', arch=arch, img_size=32, patch_size=8,
                             cls_insert_layer=3))
    assert cls_block_indices(late, 3) == [3, 4, 5]
    with pytest.raises(ValueError, match='cls_insert_layer <= 2'):
        cls_block_indices(late, 4)
    with pytest.raises(TypeError):
        cls_block_indices(torch.nn.Linear(2, 2), 4)


# ------------------------------------------------------------------------------- label subsets


def test_label_subsets_have_the_stated_fraction_per_class():
    sizes = [120, 119, 25, 35, 5, 15, 1000, 3]
    labels = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    labels = labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))]
    expected = {0.01: [1, 1, 1, 1, 1, 1, 10, 1],     # at least one per class
                0.1: [12, 12, 2, 4, 1, 2, 100, 1],   # round(): 2.5 -> 2, 3.5 -> 4, 1.5 -> 2
                1.0: sizes}
    for fraction, counts in expected.items():
        subset = label_subset(labels, fraction, seed=3)
        assert torch.bincount(labels[subset]).tolist() == counts
        assert counts == [per_class_count(n, fraction) for n in sizes]
        assert torch.equal(subset, label_subset(labels, fraction, seed=3))  # reproducible
        if fraction < 1:
            assert not torch.equal(subset, label_subset(labels, fraction, seed=4))


def test_digits_subsets_per_class(tool, small_data):
    dataset = tool.build_eval_dataset(dict(type='ImageNet', data_root=str(
        small_data / 'digits_imagenet'), split='train'), 32)
    labels = tool.dataset_labels(dataset)
    n_c = torch.bincount(labels)
    for fraction in (0.01, 0.1, 1.0):
        counts = torch.bincount(labels[label_subset(labels, fraction, 0)], minlength=10)
        assert counts.tolist() == [per_class_count(int(n), fraction) for n in n_c]
    # the labels come from the annotations, as the packed samples carry them
    assert labels[:5].tolist() == [tool._label(dataset[i]) for i in range(5)]


# ------------------------------------------------------------------------------ the configs


def test_protocol_configs_name_their_dataset_and_protocol(tool):
    got = {p.stem: tool.load_protocol(str(p)) for p in sorted(EVAL.glob('*.py'))}
    assert {'ser_last4cls_linear_50e', 'mcr_semi_1pct', 'mcr_semi_10pct', 'mcr_knn5',
            'sidae_labels_1pct', 'sidae_labels_10pct', 'sidae_labels_100pct'} <= set(got)
    for stem, (protocol, data) in got.items():
        assert protocol['name'] == stem and protocol['paper'] and protocol['dataset']
        if stem.endswith('_digits'):  # the twin: the same protocol on the digits
            real, real_data = got[stem[:-len('_digits')]]
            assert {k: v for k, v in protocol.items() if k not in ('name', 'dataset')} == {
                k: v for k, v in real.items() if k not in ('name', 'dataset')}
            assert data['train']['data_root'].startswith('data/small/digits') and real_data
        elif data:
            assert 'digits' not in str(data) and data['train']['type'] == 'ImageNet'
    ser = got['ser_last4cls_linear_50e'][0]
    assert ser['features'] == dict(type='last_blocks_cls', num_blocks=4, norm_each=False)
    assert (ser['epochs'], ser['warmup_epochs'], ser['labels']) == (50, 0, '100%')
    assert got['ser_last4cls_linear_50e'][1]['size'] == 224
    assert [got[f'mcr_semi_{p}pct'][0]['labels'] for p in (1, 10)] == ['1%', '10%']
    assert [got[f'mcr_semi_{p}pct_finetune'][0]['mode'] for p in (1, 10)] == ['finetune'] * 2
    knn = got['mcr_knn5'][0]
    assert knn['mode'] == 'knn' and knn['knn']['k'] == 5 and knn['knn']['vote'] == 'majority'
    assert [got[f'sidae_labels_{p}pct'][0]['labels'] for p in (1, 10, 100)] == [
        '1%', '10%', '100%']
    # the real configs resolve to the papers' data (nothing is loaded here)
    ser_pre = Config.fromfile(str(
        ROOT / 'configs/ser/ser-mocov3_vit-small-p16_8xb256-coslr-100e_in1k.py'))
    train, val, size, short = tool.eval_datasets(ser_pre, got['ser_last4cls_linear_50e'][1])
    assert (train['data_root'], train['split'], val['split'], size, short) == (
        'data/imagenet', 'train', 'val', 224, 256)
    cifar = Config.fromfile(str(ROOT / 'configs/mcr/mcr_simclr_r18_cifar10.py'))
    train, val, size, short = tool.eval_datasets(cifar, got['mcr_knn5'][1])
    assert (train['type'], val['split'], size, short) == ('CIFAR10', 'test', 32, None)
    with pytest.raises(SystemExit, match='unknown protocol keys'):
        tool.load_protocol(str(EVAL / 'mcr_knn5.py'), {'protocol.epoch': 3})


def test_resize_short_then_centre_crop(tool, small_data):
    dataset = tool.build_eval_dataset(dict(type='ImageNet', data_root=str(
        small_data / 'digits_imagenet'), split='val', indices=2), 24, resize_short=28)
    images, labels = tool.stacked(tool.image_batches(dataset), 24)
    assert images.shape == (2, 3, 24, 24) and images.dtype == torch.uint8


# -------------------------------------------------------------------- the tool on the digits


def _run(tool, tmp_path, config, protocol, *extra, cfg_options=(), options=()):
    argv = [config, 'none', '--protocol-config', str(EVAL / protocol),
            '--work-dir', str(tmp_path), *extra]
    if cfg_options:
        argv += ['--cfg-options', *cfg_options]
    if options:
        argv += ['--protocol-options', *options]
    return tool.main(argv)


def test_tool_ser_last4_cls_on_the_digits(tool, small_data, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = _run(tool, tmp_path, 'configs/ser/ser-mocov3_vit-tiny-p8_digits.py',
                  'ser_last4cls_linear_50e_digits.py',
                  cfg_options=['model.backbone.arch.num_layers=6'],  # CLS after block 2 of 6
                  options=['linear_eval.train.indices=300', 'linear_eval.val.indices=100',
                           'protocol.epochs=3'])
    assert result['features']['type'] == 'last_blocks_cls'
    assert result['feature_dim'] == 4 * 96 and result['mode'] == 'frozen'
    assert result['num_labelled'] == 300 and result['num_val'] == 100
    assert (tmp_path / 'linear_eval_ser_last4cls_linear_50e_digits.json').exists()
    tuned = _run(tool, tmp_path, 'configs/ser/ser-mocov3_vit-tiny-p8_digits.py',
                 'ser_last4cls_linear_50e_digits.py', '--finetune', '--epochs', '1',
                 cfg_options=['model.backbone.arch.num_layers=6'],
                 options=['linear_eval.train.indices=40', 'linear_eval.val.indices=16'])
    assert tuned['mode'] == 'finetune' and tuned['num_labelled'] == 40
    # the tiny 4-block config itself cannot give 4 processed CLS tokens: a clear error
    with pytest.raises(ValueError, match='cls_insert_layer'):
        _run(tool, tmp_path, 'configs/ser/ser-mocov3_vit-tiny-p8_digits.py',
             'ser_last4cls_linear_50e_digits.py', options=['linear_eval.val.indices=8'])


@pytest.mark.parametrize('pct,per_class', [(1, 1), (10, 12)])
def test_tool_mcr_semi_supervised_on_the_digits(tool, small_data, tmp_path, monkeypatch, pct,
                                                per_class):
    monkeypatch.chdir(ROOT)
    config = 'configs/mcr/mcr_simclr_r18_digits.py'
    frozen = _run(tool, tmp_path, config, f'mcr_semi_{pct}pct_digits.py',
                  cfg_options=SMALL_RESNET,
                  options=['linear_eval.val.indices=64', 'protocol.epochs=5'])
    assert frozen['label_fraction'] == pct / 100 and frozen['backbone'] == 'algorithm.backbone'
    labels = torch.tensor(tool.dataset_labels(tool.build_eval_dataset(
        dict(type='ImageNet', data_root='data/small/digits_imagenet/', split='train'), 32)))
    assert torch.bincount(labels[frozen['subset']]).tolist() == [per_class] * 10  # 120 each
    assert 0 <= frozen['top1'] <= 100 and frozen['feature_dim'] == 64
    if pct == 1:  # and fine-tuned (the SimCLR-style form), same subset; a flag wins
        tuned = _run(tool, tmp_path, config, 'mcr_semi_1pct_digits.py', '--finetune',
                     '--epochs', '1', cfg_options=SMALL_RESNET,
                     options=['linear_eval.val.indices=64'])
        assert tuned['mode'] == 'finetune' and tuned['epochs'] == 1
        assert tuned['subset'] == frozen['subset']


def test_tool_5nn_equals_sklearn_on_the_same_digits_features(tool, small_data, tmp_path,
                                                             monkeypatch):
    from sklearn.neighbors import KNeighborsClassifier
    monkeypatch.chdir(ROOT)
    result = _run(tool, tmp_path, 'configs/mcr/mcr_simclr_r18_digits.py', 'mcr_knn5.py',
                  cfg_options=SMALL_RESNET, options=['linear_eval.val.indices=64'])
    assert result['mode'] == 'knn' and result['num_labelled'] == result['num_train'] == 1200
    assert result['knn'] == dict(k=5, metric='cosine', vote='majority', temperature=0.07)
    # sklearn on the very features the tool classified. A random-init ResNet maps many digits
    # to (nearly) the same feature, so exact ties make any two 5-NN implementations differ;
    # the tiny SER ViT's [CLS] features are distinct (smallest 5th/6th-neighbour gap ~1e-9).
    seen = {}

    def spy(train_x, train_y, test_x, **kwargs):
        seen.update(train_x=train_x, train_y=train_y, test_x=test_x)
        return knn_predict(train_x, train_y, test_x, **kwargs)
    monkeypatch.setattr(tool, 'knn_predict', spy)
    result = _run(tool, tmp_path, 'configs/ser/ser-mocov3_vit-tiny-p8_digits.py', 'mcr_knn5.py')
    xtr, ytr, xte = (seen[k].double().numpy() for k in ('train_x', 'train_y', 'test_x'))
    ref = KNeighborsClassifier(n_neighbors=5, metric='cosine', algorithm='brute').fit(
        xtr, ytr).predict(xte)
    labels = tool.dataset_labels(tool.build_eval_dataset(
        dict(type='ImageNet', data_root='data/small/digits_imagenet/', split='val'), 32))
    assert result['num_val'] == labels.numel() == 597
    assert result['top1'] == pytest.approx(100 * float(np.mean(ref == labels.numpy())),
                                           abs=1e-4)


@pytest.mark.parametrize('pct', [1, 10, 100])
def test_tool_sidae_label_fractions_on_the_digits(tool, small_data, tmp_path, monkeypatch, pct):
    monkeypatch.chdir(ROOT)
    result = _run(tool, tmp_path, 'configs/sidae/sidae_r18_digits.py',
                  f'sidae_labels_{pct}pct.py',
                  cfg_options=['linear_eval.val.indices=64', 'model.backbone.base_channels=8',
                               'model.backbone.stem_channels=8', 'model.neck.in_channels=64'],
                  options=['protocol.epochs=2'])
    assert result['num_labelled'] == {1: 10, 10: 120, 100: 1200}[pct]
    assert result['protocol'] == f'sidae_labels_{pct}pct'
    assert (tmp_path / f'linear_eval_sidae_labels_{pct}pct.json').exists()

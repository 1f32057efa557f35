"""SidAE paper (Self-Supervised Siamese Autoencoders), Table 1: with few labels, SidAE's
features beat both of its parts, SimSiam and the denoising autoencoder (DAE).

Three arms built from ``configs/sidae/sidae_r18_digits.py`` and trained identically:
SidAE (w = 0.5, the paper's value for linear evaluation), SimSiam (w = 0: SidAE with
w = 0 *is* mmpretrain's SimSiam, the same modules and calls; ``tests/test_sidae.py``),
and the DAE (w = 1: the same encoder and decoder, reconstruction only; as
``configs/sidae/dae_r18_digits.py``). One change for a 2-core CPU: the ResNet-18 is 16
channels wide at its stem (128-d features), the projector 128 -> 128 -> 128, the
predictor bottleneck 32, the decoder 64-32-32-16-16. Same init per seed in every arm (the
decoder exists in all three; unused at w = 0). Views: random resized crop (area 0.2-1)
+ brightness/contrast jitter (the "noisy" views); the target is the clean image.
Optimizer: the paper's SGD (lr 0.03, momentum 0.9, wd 5e-4, cosine), with SimSiam's
fixed predictor learning rate (``SimSiamHook(fix_pred_lr=True)`` in the config).

Metric: linear accuracy of the frozen backbone features with 1% of the training labels
(``ssl_digits.low_label_accuracy``: 2 per class, mean of 10 label draws per seed), and
with 10% as context.
"""
import torch

import ssl_digits as S

NAME = 'sidae_low_label'
CLAIM = ('SidAE paper, Table 1: with 1% of the labels, a linear classifier on SidAE\'s '
         'features is more accurate than on SimSiam\'s and on the denoising '
         'autoencoder\'s.')
SEEDS = list(range(5))

CONFIG = 'configs/sidae/sidae_r18_digits.py'
SMALL = dict(backbone=dict(base_channels=16, stem_channels=16),
             neck=dict(in_channels=128, hid_channels=128, out_channels=128),
             head=dict(predictor=dict(in_channels=128, hid_channels=32, out_channels=128)),
             decoder=dict(in_channels=128, channels=(64, 32, 32, 16, 16)))
BATCH, LR, MOMENTUM, WD = 32, 0.03, 0.9, 5e-4
DRAWS = 10
ARMS = {'SidAE': 0.5, 'SimSiam': 0.0, 'DAE': 1.0}


def sizes(quick):
    return dict(epochs=1) if quick else dict(epochs=15)


def make(x, gen):
    return dict(inputs=[S.view(x, gen), S.view(x, gen), x], data_samples=None)


def train_one(seed, w, cfg, data):
    from mmengine.optim import OptimWrapper
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model, _ = S.build(CONFIG, w=w, **SMALL)
    predictor = {id(p) for p in model.head.predictor.parameters()}
    rest = [p for p in model.parameters() if id(p) not in predictor]
    opt = torch.optim.SGD([dict(params=rest), dict(params=list(model.head.predictor
                                                               .parameters()), fixed=True)],
                          lr=LR, momentum=MOMENTUM, weight_decay=WD)

    def set_lr(it, total):
        for g in opt.param_groups:
            g['lr'] = LR if g.get('fixed') else S.cosine_lr(LR, it, total)
    share = None
    if 0 < w < 1:  # the reconstruction term's pull on the backbone, first batch
        b = make(xtr[:BATCH], torch.Generator().manual_seed(10_000 + seed))
        model.train()
        share = S.gradient_share(model.loss(b['inputs']), 'loss_dae', 'loss_si',
                                 model.backbone.parameters())
        model.zero_grad(set_to_none=True)
    logs = S.train(model, OptimWrapper(opt), make, xtr, cfg['epochs'], BATCH, seed, set_lr,
                   ('loss_si', 'loss_dae'))
    feat = lambda x: S.pooled(model.backbone(x))  # noqa: E731
    ftr, fte = S.features(feat, xtr), S.features(feat, xte)
    acc = {frac: S.low_label_accuracy(ftr, ytr.numpy(), fte, yte.numpy(), frac, DRAWS, seed)
           for frac in (0.01, 0.1)}
    return dict(acc1=acc[0.01], acc10=acc[0.1], share=share,
                dae=S.epoch_means(logs['loss_dae'], cfg['epochs']),
                si=S.epoch_means(logs['loss_si'], cfg['epochs']))


def run(seeds, quick, progress):
    cfg = sizes(quick)
    res = S.run_arms(seeds, ARMS, lambda seed, w, data: train_one(seed, w, cfg, data),
                     lambda r: f'1% acc {r["acc1"]:.4f} 10% acc {r["acc10"]:.4f}', progress)

    def vals(a, k):
        return [r[k] for r in res[a]]

    def comp(control, key, claim, metric):
        return dict(claim=claim, metric=metric, treatment='SidAE', control=control,
                    treatment_values=vals('SidAE', key), control_values=vals(control, key),
                    direction='higher')
    one = 'linear accuracy, 1% labels (2 per class, mean of 10 draws), test split'
    ten = 'linear accuracy, 10% labels (13 per class, mean of 10 draws), test split'
    comparisons = [
        comp('SimSiam', 'acc1', 'SidAE beats SimSiam with 1% labels (Table 1)', one),
        comp('DAE', 'acc1', 'SidAE beats the DAE with 1% labels (Table 1)', one),
        comp('SimSiam', 'acc10', '(context) SidAE vs SimSiam, 10% labels', ten),
        comp('DAE', 'acc10', '(context) SidAE vs DAE, 10% labels', ten),
    ]
    rows = ['| arm | w | 1% labels | 10% labels |', '|---|---|---|---|']
    for a, w in ARMS.items():
        rows.append(f'| {a} | {w} | {S.mean_std(vals(a, "acc1"))} | '
                    f'{S.mean_std(vals(a, "acc10"))} |')
    markdown = 'All three arms (mean ± std over seeds):\n\n' + '\n'.join(rows)
    sid = res['SidAE']
    notes = [
        'Gradient share of w·L_dae relative to (1 − w)·L_si on the backbone\'s parameters, '
        'first batch (SidAE arm): ' + S.mean_std(vals('SidAE', 'share')) + '.',
        'SidAE arm, per epoch, first -> last: w·L_dae '
        + ', '.join(f'{r["dae"][0]:.3g} -> {r["dae"][-1]:.3g}' for r in sid)
        + '; (1 − w)·L_si ' + ', '.join(f'{r["si"][0]:.3g} -> {r["si"][-1]:.3g}' for r in sid)
        + '.',
    ]
    setup = (f'`{CONFIG}` with w = 0.5 / 0 / 1 and the ResNet-18 narrowed to 16 stem '
             f'channels (128-d features; projector 128→128→128, predictor 128→32→128, '
             f'decoder 64-32-32-16-16); SGD lr {LR} cosine (predictor fixed at {LR}), '
             f'momentum {MOMENTUM}, wd {WD}, batch {BATCH}, {cfg["epochs"]} epochs on the '
             f'training images of a 70/30 digits split drawn per seed; same init, batches and '
             f'views in every arm. Not tuned.')
    return dict(comparisons=comparisons, setup=setup, markdown=markdown, notes=notes)

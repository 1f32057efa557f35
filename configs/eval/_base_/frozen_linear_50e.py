# The linear probe the protocols share where their papers are not specific (sslreg's
# choices): a linear classifier on frozen features, 50 epochs, SGD lr 0.05, momentum 0.9,
# batch 256, no weight decay, cosine, no warm-up, features standardized with the training
# statistics; label subsets drawn from seed 0. A protocol config inherits it and names
# itself, its paper, its dataset, its label fraction and (if not pooled) its features.
protocol = dict(
    mode='frozen',
    seed=0,
    features=dict(type='pooled'),
    epochs=50,
    warmup_epochs=0,
    lr=0.05,
    momentum=0.9,
    batch_size=256,
    weight_decay=0.0,
    standardize=True)

# The denoising-autoencoder baseline of SidAE (w = 1): the same encoder, decoder, views
# and clean targets as sidae_r18_digits.py, no Siamese term (the predictor is unused).
_base_ = ['./sidae_r18_digits.py']
model = dict(w=1.0)

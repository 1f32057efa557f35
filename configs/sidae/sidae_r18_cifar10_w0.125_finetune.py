# SidAE pre-training on CIFAR-10 for the paper's fine-tuning experiments: the paper uses
# w = 0.125 when the pre-trained encoder is afterwards fine-tuned (end to end, with the
# labels), instead of the w of its linear evaluations. Everything else as
# sidae_r18_cifar10.py. w only weighs the pre-training loss; the fine-tuning itself is
#   python tools/linear_eval.py configs/sidae/sidae_r18_cifar10_w0.125_finetune.py \
#       WORK_DIR/epoch_200.pth --finetune --labels 1%
_base_ = ['./sidae_r18_cifar10.py']
model = dict(w=0.125)

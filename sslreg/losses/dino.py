r"""DINO: self-distillation cross-entropy with a centred, sharpened teacher.

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin, "Emerging Properties in
Self-Supervised Vision Transformers" (ICCV 2021, arXiv:2104.14294); reference code
github.com/facebookresearch/dino (``main_dino.py``, ``class DINOLoss``), whose layout this
follows: the loss and its state (the centre, the temperature schedule) in one object.

Student outputs :math:`g_{\theta_s}(x_v)` for views :math:`v = 1..V_s` and teacher outputs
:math:`g_{\theta_t}(x_i)` for views :math:`i = 1..V_t` (the global crops, which come first
among the student's views), each ``(B, K)`` over ``K`` prototypes:

.. math::

    P_s(x_v) = \mathrm{softmax}\bigl(g_{\theta_s}(x_v) / \tau_s\bigr), \qquad
    P_t(x_i) = \mathrm{softmax}\bigl((g_{\theta_t}(x_i) - c) / \tau_t(n)\bigr)

    \mathcal{L} = \frac{1}{M} \sum_{i=1}^{V_t} \sum_{v \neq i}
        H\bigl(P_t(x_i), P_s(x_v)\bigr), \qquad
    H(a, b) = -\frac1B \sum_{b'=1}^{B} \sum_{k} a_{b'k} \log b_{b'k}

(:math:`M` the number of pairs :math:`(i, v),\ v \neq i`; two views: :math:`\mathcal{L} =
\frac12 [H(P_t(x_1), P_s(x_2)) + H(P_t(x_2), P_s(x_1))]`). After the loss, the centre
moves to the EMA of the batch mean of the teacher outputs, over all teacher views and
all ranks (:math:`N` rows in all):

.. math::

    c \leftarrow m\, c + (1 - m)\, \frac{1}{N} \sum_{r=1}^{N} g_{\theta_t}(x)_r

Teacher temperature schedule (:math:`W` = ``warmup_teacher_temp_steps``, steps in
whatever unit the caller counts: SERDINO passes MMEngine iterations):

.. math::

    \tau_t(n) = \tau_w + (\tau - \tau_w)\, n / W \quad (n < W), \qquad \tau_t(n) = \tau
    \quad (n \ge W)

i.e. ``teacher_temp_schedule = concat(linspace(warmup_teacher_temp, teacher_temp, W + 1)[:W],
ones * teacher_temp)``. (The reference's is ``concat(linspace(warmup_teacher_temp,
teacher_temp, W), ones * teacher_temp)``, which reaches :math:`\tau` one step earlier;
sslreg's SERDINO has always used the form above, kept so that its results do not move.)
Defaults as ``main_dino.py``: :math:`\tau_s` 0.1, :math:`\tau_w = \tau` = 0.04 (no
warm-up), :math:`m` 0.9.

Usage::

    loss_fn = DINOLoss(out_dim=65536)
    loss = loss_fn([s1, s2], [t1.detach(), t2.detach()], step=it)  # also updates the centre

Distributed: the centre's sums are all-reduced (``sync=True``; no-op without a process
group), so every rank keeps the same centre; all ranks must call :meth:`forward` /
:meth:`update_center` (collective). The loss itself is per rank, as in the reference.
"""
from typing import List, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import all_reduce_sum_

__all__ = ['DINOLoss']

Outputs = Union[torch.Tensor, Sequence[torch.Tensor]]


def _views(x: Outputs, name: str) -> List[torch.Tensor]:
    views = [x] if torch.is_tensor(x) else list(x)
    if not views or any(v.dim() != 2 for v in views):
        raise ValueError(f'{name} must be a non-empty sequence of (B, K) tensors, got '
                         f'{[tuple(v.shape) for v in views]}')
    return views


class DINOLoss(nn.Module):
    r"""DINO's loss with its state: the centre :math:`c` (buffer ``center``, ``(1, K)``),
    the teacher temperature schedule and the student temperature (module docstring).

    Args:
        out_dim: :math:`K`, the number of prototypes (width of the head's output).
        teacher_temp: :math:`\tau`, the teacher temperature after the warm-up.
        warmup_teacher_temp: :math:`\tau_w`, the teacher temperature at step 0.
        warmup_teacher_temp_steps: :math:`W`; 0 = no warm-up.
        student_temp: :math:`\tau_s`.
        center_momentum: :math:`m`.
        sync: all-reduce the centre's statistics over ranks.
    """

    def __init__(self, out_dim: int, teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_steps: int = 0, student_temp: float = 0.1,
                 center_momentum: float = 0.9, sync: bool = True):
        super().__init__()
        if not (teacher_temp > 0 and warmup_teacher_temp > 0 and student_temp > 0):
            raise ValueError('temperatures must be > 0, got teacher_temp={}, '
                             'warmup_teacher_temp={}, student_temp={}'.format(
                                 teacher_temp, warmup_teacher_temp, student_temp))
        if not 0 <= center_momentum <= 1 or warmup_teacher_temp_steps < 0:
            raise ValueError(f'center_momentum must be in [0, 1] and warmup_teacher_temp_steps '
                             f'>= 0, got {center_momentum} and {warmup_teacher_temp_steps}')
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_steps = int(warmup_teacher_temp_steps)
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.sync = sync
        self.register_buffer('center', torch.zeros(1, out_dim))

    def teacher_temperature(self, step: int) -> float:
        r""":math:`\tau_t(n)` at step ``n`` = ``step``."""
        warm = self.warmup_teacher_temp_steps
        if warm > 0 and step < warm:
            frac = step / warm
            return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * frac
        return self.teacher_temp

    def teacher_temp_schedule(self, num_steps: int) -> torch.Tensor:
        """The first ``num_steps`` values of :meth:`teacher_temperature` as a float64 tensor
        (the reference precomputes this array)."""
        n = torch.arange(num_steps, dtype=torch.float64)
        warm = self.warmup_teacher_temp_steps
        ramp = self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * (
            n / max(warm, 1))
        return torch.where(n < warm, ramp, torch.full_like(n, self.teacher_temp))

    def cross_entropy(self, student_output: Outputs, teacher_output: Outputs,
                      step: int = 0) -> torch.Tensor:
        r""":math:`\mathcal{L}` with the current centre; changes no state.

        ``student_output``: the student's ``(B, K)`` outputs per view;
        ``teacher_output``: the teacher's per view (view ``i`` is student view ``i``);
        the teacher side gets no gradient."""
        student, teacher = _views(student_output, 'student_output'), _views(
            teacher_output, 'teacher_output')
        if len(student) == 1 and len(teacher) == 1:
            raise ValueError('DINOLoss needs at least one (teacher view, other student view) '
                             'pair')
        temp = self.teacher_temperature(step)
        q = [F.softmax((t.detach() - self.center) / temp, dim=-1) for t in teacher]
        log_p = [F.log_softmax(s / self.student_temp, dim=-1) for s in student]
        total, n_terms = None, 0
        for iq, qi in enumerate(q):
            for v, lp in enumerate(log_p):
                if v == iq:
                    continue  # the teacher and the student see the same view
                term = -(qi * lp).sum(-1).mean()
                total = term if total is None else total + term
                n_terms += 1
        return total / n_terms

    @torch.no_grad()
    def update_center(self, teacher_output: Outputs) -> None:
        """:math:`c \\leftarrow m c + (1-m)\\,\\mathrm{mean}`, the mean over every teacher
        row of every view and rank (ranks may hold different batch sizes)."""
        t = torch.cat(_views(teacher_output, 'teacher_output'))
        total = t.sum(0, keepdim=True)
        count = torch.tensor([float(t.shape[0])], device=t.device)
        all_reduce_sum_(total, count, enabled=self.sync)
        self.center.mul_(self.center_momentum).add_(total / count, alpha=1 - self.center_momentum)

    def forward(self, student_output: Outputs, teacher_output: Outputs,
                step: int = 0) -> torch.Tensor:
        """:meth:`cross_entropy`, then :meth:`update_center` with the teacher outputs (the
        loss uses the centre from before this batch, as the reference)."""
        loss = self.cross_entropy(student_output, teacher_output, step)
        self.update_center(teacher_output)
        return loss

    def extra_repr(self) -> str:
        return (f'out_dim={self.center.shape[1]}, teacher_temp={self.teacher_temp}, '
                f'warmup_teacher_temp={self.warmup_teacher_temp}, '
                f'warmup_teacher_temp_steps={self.warmup_teacher_temp_steps}, '
                f'student_temp={self.student_temp}, center_momentum={self.center_momentum}')

r"""mmseg's ``IoUMetric`` plus the Dice of named classes as scalars (the vessel Dice).

Retinal-vessel papers (the SIM paper's DRIVE / STARE / CHASE_DB1 / HRF tables among
them) report the Dice of the *vessel* class,

.. math::

    \mathrm{Dice}_{vessel} = \frac{2\,|P \cap G|}{|P| + |G|},

with :math:`P` the predicted and :math:`G` the ground-truth vessel pixels summed over
the whole evaluation set (ignored pixels left out). mmseg 1.2.2's ``IoUMetric`` with
``iou_metrics=['mDice']`` returns only ``mDice``, the mean over background *and* vessel
(the background Dice is ~97, so mDice reads ~88-90 where the vessel Dice reads ~80);
its per-class values are only printed in the per-class table. This metric returns
everything ``IoUMetric`` returns, unchanged, plus ``Dice.<class>`` for each class named
in ``dice_classes``, computed from the same accumulated areas::

    val_evaluator = dict(type='VesselDiceMetric', iou_metrics=['mDice'])  # + Dice.vessel
    test_evaluator = val_evaluator

Values are percentages rounded to 2 decimals, as mmseg rounds its own.
"""
from typing import Dict, Sequence

import numpy as np
from mmengine.registry import METRICS
from mmseg.evaluation.metrics import IoUMetric


@METRICS.register_module()
class VesselDiceMetric(IoUMetric):
    """``IoUMetric`` that also returns ``Dice.<name>`` for the classes in
    ``dice_classes`` (default: the fundus datasets' ``'vessel'``).

    Args:
        dice_classes: class names (as in ``dataset_meta['classes']``) whose Dice is
            returned as a scalar ``Dice.<name>``.
        **kwargs: :class:`mmseg.evaluation.IoUMetric`'s arguments (``iou_metrics``,
            ``ignore_index``, ``nan_to_num``, ...), unchanged.
    """

    def __init__(self, dice_classes: Sequence[str] = ('vessel', ), **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(dice_classes, str):
            dice_classes = (dice_classes, )
        self.dice_classes = tuple(dice_classes)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)  # does not modify ``results``
        if self.format_only:
            return metrics
        classes = list(self.dataset_meta['classes'])
        missing = [name for name in self.dice_classes if name not in classes]
        if missing:
            raise KeyError(f'VesselDiceMetric: dice_classes {missing} not among the '
                           f"dataset's classes {classes}")
        # the same sums and formula IoUMetric.compute_metrics uses (so the value equals
        # the 'Dice' column of the per-class table it prints)
        areas = [sum(r) for r in zip(*results)]
        dice = self.total_area_to_metrics(*areas, metrics=['mDice'],
                                          nan_to_num=self.nan_to_num)['Dice']
        for name in self.dice_classes:
            metrics[f'Dice.{name}'] = np.round(dice[classes.index(name)] * 100, 2)
        return metrics

"""Evaluation of sslreg models (registered metrics and hooks, plus plain functions).

* :mod:`.equivariance` -- SER's equivariance score: :func:`token_maps` /
  :func:`per_sample_scores` / :func:`equivariance_scores`, the ``EquivarianceMetric``,
  the ``ser_eval_transforms`` / ``ser_equivariance_predict`` functions SER algorithms
  call, and a command line;
* :mod:`.collapse` -- neural-collapse diagnostics (CDNV, NCC, ranks) and
  ``FeatureCollapseMetric``; :mod:`.layer_features` -- ``LayerFeatureHook``, which
  records the layers those diagnostics read in val/test;
* :mod:`.linear_probe`, :mod:`.knn` -- the frozen-feature linear / kNN probe for the
  small data;
* :mod:`.transfer` -- VCReg's transfer probe (Table 1, App. C.1): L2-regularized logistic
  regression by L-BFGS, lambda picked on validation data (tools/transfer_eval.py);
* :mod:`.vessel_dice` -- ``VesselDiceMetric`` (the vessel-segmentation Dice).

Imports no model class (``sslreg.architecture`` finds a model's architecture;
tests/test_import_rules.py).
"""
from .collapse import (FeatureCollapseMetric, cdnv, class_means, effective_rank, feature_rank,
                       ncc_accuracy, ncc_agreement, ncc_predict)
from .equivariance import (DEFAULT_TRANSFORMS, LOCATIONS, TRANSFORM_FAMILIES, EquivarianceMetric,
                           equivariance_scores, per_sample_scores, sample_transforms,
                           ser_eval_transforms, ser_predict, token_map, token_maps)
from .knn import knn_predict, knn_top1
from .layer_features import LayerFeatureHook, pool_features
from .linear_probe import (cls_block_indices, extract_features, feature_extractor, finetune,
                           knn_accuracy, label_subset, last_blocks_cls, linear_probe,
                           per_class_count, pooled, pooled_output, train_linear_classifier)
from .transfer import (fit_logistic_regression, holdout_split, lambda_grid, select_lambda,
                       sklearn_C, transfer_probe)
from .vessel_dice import VesselDiceMetric

__all__ = [
    # equivariance
    'DEFAULT_TRANSFORMS', 'LOCATIONS', 'TRANSFORM_FAMILIES', 'sample_transforms', 'token_map',
    'token_maps', 'per_sample_scores', 'equivariance_scores', 'EquivarianceMetric',
    'ser_eval_transforms', 'ser_predict',
    # collapse, layer features
    'FeatureCollapseMetric', 'cdnv', 'class_means', 'effective_rank', 'feature_rank',
    'ncc_accuracy', 'ncc_agreement', 'ncc_predict', 'LayerFeatureHook', 'pool_features',
    # linear / kNN probe
    'extract_features', 'knn_accuracy', 'linear_probe', 'label_subset', 'per_class_count',
    'train_linear_classifier', 'finetune', 'pooled', 'pooled_output', 'last_blocks_cls',
    'cls_block_indices', 'feature_extractor', 'knn_predict', 'knn_top1',
    # transfer (logistic regression)
    'fit_logistic_regression', 'holdout_split', 'lambda_grid', 'select_lambda', 'sklearn_C',
    'transfer_probe',
    # segmentation
    'VesselDiceMetric',
]

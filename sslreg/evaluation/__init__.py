"""Evaluation of sslreg models: SER's equivariance score (a function, a metric and a
command line) and the frozen-feature linear / kNN probe for the small data."""
from .equivariance import (DEFAULT_TRANSFORMS, EquivarianceMetric, equivariance_scores,
                           per_sample_scores, token_map)
from .linear_probe import extract_features, knn_accuracy, linear_probe
from .linear_probe import feature_extractor, last_blocks_cls, per_class_count
from .knn import knn_predict, knn_top1
from .collapse import (FeatureCollapseMetric, cdnv, class_means, effective_rank, feature_rank,
                       ncc_accuracy, ncc_agreement, ncc_predict)
from .layer_features import LayerFeatureHook, pool_features
from .vessel_dice import VesselDiceMetric  # noqa: F401  (registers)

__all__ = ['DEFAULT_TRANSFORMS', 'EquivarianceMetric', 'equivariance_scores',
           'per_sample_scores', 'token_map', 'extract_features', 'knn_accuracy', 'linear_probe']
__all__ += ['FeatureCollapseMetric', 'cdnv', 'class_means', 'effective_rank', 'feature_rank',
            'ncc_accuracy', 'ncc_agreement', 'ncc_predict', 'LayerFeatureHook', 'pool_features']
__all__ += ['feature_extractor', 'last_blocks_cls', 'per_class_count', 'knn_predict', 'knn_top1']

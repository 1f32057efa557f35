"""Evaluation of sslreg models: SER's equivariance score (a function, a metric and a
command line) and the frozen-feature linear / kNN probe for the small data."""
from .equivariance import (DEFAULT_TRANSFORMS, EquivarianceMetric, equivariance_scores,
                           per_sample_scores, token_map)
from .linear_probe import extract_features, knn_accuracy, linear_probe

__all__ = ['DEFAULT_TRANSFORMS', 'EquivarianceMetric', 'equivariance_scores',
           'per_sample_scores', 'token_map', 'extract_features', 'knn_accuracy', 'linear_probe']

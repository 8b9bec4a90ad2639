"""Component families; each supplies additive statistics, an E-step and an M-step."""

from .covariance import COVARIANCE_MODELS, CovarianceModel
from .gaussian import GaussianFamily, GaussianParams, GaussianStats

__all__ = ["COVARIANCE_MODELS", "CovarianceModel", "GaussianFamily", "GaussianParams",
           "GaussianStats"]

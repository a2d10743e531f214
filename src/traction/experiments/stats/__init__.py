"""Experiment statistics, pure: summary statistics in, results out (the shape of gbstats).

The analysis never needs the units themselves: per variation, n, the sum and sum of squares
of the metric (and of a ratio's denominator with the cross-product, and of the pre-exposure
covariate with its cross-product for CUPED) are enough, and SQL computes them. Every formula
is written out in docs/experiments.md.
"""

from traction.experiments.stats.core import (
    BayesResult,
    FreqResult,
    MeanStats,
    RatioStats,
    bayesian,
    benjamini_hochberg,
    cuped,
    frequentist,
    holm,
    mde,
    power,
    sample_size,
    sequential,
    srm,
)

__all__ = [
    "BayesResult",
    "FreqResult",
    "MeanStats",
    "RatioStats",
    "bayesian",
    "benjamini_hochberg",
    "cuped",
    "frequentist",
    "holm",
    "mde",
    "power",
    "sample_size",
    "sequential",
    "srm",
]

"""The statistics of an A/B test over per-variation summary statistics.

Estimand: the relative lift of a variation's mean over control's, Δ = μ_b/μ_a − 1 (and the
absolute difference). Means may be plain (conversion: values 0/1; counts; sums per unit) or
ratios of two per-unit sums (revenue per session), handled by the delta method.

- `frequentist`: Welch's t-test on the difference; the lift's variance by the delta method
  (var_b/μ_a² + μ_b²·var_a/μ_a⁴), Welch–Satterthwaite degrees of freedom; two-sided p.
- `bayesian`: a Gaussian model of the lift with a flat prior (or a proper one, N(m, s²)):
  chance to beat control P(Δ > 0), the expected loss of choosing each arm, a credible interval.
- `sequential`: an always-valid confidence sequence (Howard et al.'s normal mixture, as in
  GrowthBook and Eppo): valid however often one looks.
- `cuped`: variance reduction with each unit's pre-exposure value, θ = cov(Y, X)/var(X) pooled.
- `srm`: the χ² test of the observed split against the configured weights.
- `holm`, `benjamini_hochberg`: adjusted p-values across metrics and variations.
- `power`, `sample_size`, `mde`: for a two-sided test of a relative lift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from types import ModuleType


@cache
def _scipy_stats() -> ModuleType:
    """scipy.stats, imported when first needed: it takes ~0.7 s, which every CLI command and
    every server start paid, though most never test an experiment."""
    from scipy import stats

    return stats


@dataclass(frozen=True)
class MeanStats:
    """Per-unit values of one variation: n units, Σy, Σy²."""

    n: int
    sum: float
    sum_squares: float

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Sample variance (n − 1)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.sum_squares - self.sum * self.sum / self.n) / (self.n - 1))

    @property
    def mean_variance(self) -> float:
        """Variance of the mean."""
        return self.variance / self.n if self.n else math.inf


@dataclass(frozen=True)
class RatioStats:
    """A ratio metric Σy/Σx per variation (e.g. revenue per session): the numerator's and the
    denominator's per-unit sums and squares, and their cross-product Σxy."""

    n: int
    sum: float
    sum_squares: float
    den_sum: float
    den_sum_squares: float
    cross: float

    @property
    def mean(self) -> float:
        return self.sum / self.den_sum if self.den_sum else 0.0

    @property
    def mean_variance(self) -> float:
        """Delta method: var(Ȳ/X̄) ≈ (var_y/x̄² − 2·cov·ȳ/x̄³ + var_x·ȳ²/x̄⁴) / n."""
        n = self.n
        if n < 2 or not self.den_sum:
            return math.inf
        my, mx = self.sum / n, self.den_sum / n
        vy = (self.sum_squares - self.sum**2 / n) / (n - 1)
        vx = (self.den_sum_squares - self.den_sum**2 / n) / (n - 1)
        cov = (self.cross - self.sum * self.den_sum / n) / (n - 1)
        return max(0.0, (vy / mx**2 - 2 * cov * my / mx**3 + vx * my**2 / mx**4) / n)


Stats = MeanStats | RatioStats


@dataclass(frozen=True)
class FreqResult:
    lift: float  # relative: μ_b/μ_a − 1
    lift_ci: tuple[float, float]
    difference: float  # absolute: μ_b − μ_a
    difference_ci: tuple[float, float]
    p_value: float
    df: float


def _lift_variance(a: Stats, b: Stats) -> float:
    """Delta method for μ_b/μ_a − 1 with independent arms."""
    ma, mb = a.mean, b.mean
    return b.mean_variance / ma**2 + mb**2 * a.mean_variance / ma**4


def _welch_df(a: Stats, b: Stats) -> float:
    va, vb = a.mean_variance, b.mean_variance
    denom = (va**2 / max(a.n - 1, 1)) + (vb**2 / max(b.n - 1, 1))
    return (va + vb) ** 2 / denom if denom > 0 else math.inf


def frequentist(a: Stats, b: Stats, alpha: float = 0.05) -> FreqResult:
    """Welch's t-test of b against control a: the difference's p-value and intervals, the
    relative lift's interval by the delta method (same degrees of freedom)."""
    diff = b.mean - a.mean
    se = math.sqrt(a.mean_variance + b.mean_variance)
    df = _welch_df(a, b)
    q = float(
        _scipy_stats().t.ppf(1 - alpha / 2, df)
        if math.isfinite(df)
        else _scipy_stats().norm.ppf(1 - alpha / 2)
    )
    if se == 0 or not math.isfinite(se):
        p = 1.0 if diff == 0 or not math.isfinite(se) else 0.0
    else:
        p = float(2 * _scipy_stats().t.sf(abs(diff) / se, df))
    lift = b.mean / a.mean - 1 if a.mean else math.nan
    lse = math.sqrt(_lift_variance(a, b)) if a.mean else math.nan
    return FreqResult(
        lift, (lift - q * lse, lift + q * lse), diff, (diff - q * se, diff + q * se), p, df
    )


@dataclass(frozen=True)
class BayesResult:
    lift: float  # the posterior mean of the relative lift
    ci: tuple[float, float]  # credible interval
    chance_to_win: float  # P(Δ > 0)
    risk_control: float  # expected loss (relative) of keeping control
    risk_variation: float  # expected loss of shipping the variation


def bayesian(
    a: Stats, b: Stats, alpha: float = 0.05, prior_mean: float = 0.0, prior_sd: float | None = None
) -> BayesResult:
    """Normal likelihood of the lift (delta method) with a flat prior, or N(prior_mean,
    prior_sd²): the posterior is normal, and so are its chance to win and risks."""
    lift = b.mean / a.mean - 1 if a.mean else 0.0
    var = _lift_variance(a, b) if a.mean else math.inf
    if prior_sd is not None and math.isfinite(var) and var > 0:
        precision = 1 / var + 1 / prior_sd**2
        lift = (lift / var + prior_mean / prior_sd**2) / precision
        var = 1 / precision
    sd = math.sqrt(var) if math.isfinite(var) else math.inf
    if not sd or not math.isfinite(sd):
        win = 0.5 if sd != 0 else float(lift > 0)
        return BayesResult(lift, (-math.inf, math.inf) if sd else (lift, lift), win, 0.0, 0.0)
    z = float(_scipy_stats().norm.ppf(1 - alpha / 2))
    win = float(_scipy_stats().norm.sf(0, loc=lift, scale=sd))
    # E[max(0, -Δ)] for shipping b, E[max(0, Δ)] for keeping a (normal partial expectations)
    pdf, cdf = _scipy_stats().norm.pdf(lift / sd), _scipy_stats().norm.cdf(lift / sd)
    loss_b = sd * pdf - lift * (1 - cdf)
    loss_a = sd * pdf + lift * cdf
    return BayesResult(lift, (lift - z * sd, lift + z * sd), win, float(loss_a), float(loss_b))


def sequential(a: Stats, b: Stats, alpha: float = 0.05, tuning_n: float = 5000.0) -> FreqResult:
    """An always-valid confidence sequence for the difference (and the lift, same width in
    standard errors): Howard et al.'s normal mixture boundary, with the mixture tuned to be
    tightest around `tuning_n` units in total; its p-value is the always-valid one (the
    smallest α whose sequence excludes 0)."""
    base = frequentist(a, b, alpha)
    se = math.sqrt(a.mean_variance + b.mean_variance)
    n = a.n + b.n
    if not se or not math.isfinite(se) or n == 0:
        return base
    half = _mixture_halfwidth(se, n, alpha, tuning_n)
    lse = math.sqrt(_lift_variance(a, b)) if a.mean else math.nan
    lhalf = half / se * lse
    p = _mixture_p(abs(base.difference), se, n, tuning_n)
    return FreqResult(base.lift, (base.lift - lhalf, base.lift + lhalf), base.difference,
                      (base.difference - half, base.difference + half), p, base.df)  # fmt: skip


def _rho(alpha: float, tuning_n: float) -> float:
    """The mixture's spread that minimises the boundary at `tuning_n` (Howard et al. eq. 15)."""
    la = -2 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1)) / tuning_n)


def _mixture_halfwidth(se: float, n: float, alpha: float, tuning_n: float) -> float:
    """se·√n is the per-unit scale σ; the boundary is σ·√(2(nρ²+1)/(n²ρ²)·log(√(nρ²+1)/α))."""
    rho = _rho(alpha, tuning_n)
    sigma = se * math.sqrt(n)
    return sigma * math.sqrt(
        2 * (n * rho**2 + 1) / (n**2 * rho**2) * math.log(math.sqrt(n * rho**2 + 1) / alpha)
    )


def _mixture_p(diff: float, se: float, n: float, tuning_n: float) -> float:
    """The smallest α at which the confidence sequence excludes 0 (solving the boundary for
    α): α = √(nρ²+1)·exp(−d²n²ρ²/(2σ²(nρ²+1))), with ρ tuned at α = 0.05."""
    rho = _rho(0.05, tuning_n)
    sigma2 = se**2 * n
    v = n * rho**2 + 1
    return min(1.0, math.sqrt(v) * math.exp(-(diff**2) * n**2 * rho**2 / (2 * sigma2 * v)))


def cuped(
    y: Sequence[MeanStats], x: Sequence[MeanStats], cross: Sequence[float]
) -> list[MeanStats]:
    """Variance-reduced per-variation stats from each unit's pre-exposure value X (Σx, Σx²
    per arm, and Σxy): Y' = Y − θ(X − x̄), θ = pooled cov(Y, X)/var(X); x̄ is the pooled mean,
    so the estimate stays unbiased under randomisation. Returns stats of Y' per arm."""
    n = sum(s.n for s in y)
    sy, sx = sum(s.sum for s in y), sum(s.sum for s in x)
    sxx, sxy = sum(s.sum_squares for s in x), sum(cross)
    var_x = sxx - sx * sx / n
    theta = (sxy - sx * sy / n) / var_x if var_x > 0 else 0.0
    x_bar = sx / n
    out = []
    for yi, xi, ci in zip(y, x, cross, strict=True):
        # Σ(y − θ(x − x̄)) and Σ(y − θ(x − x̄))², expanded over the arm's sums
        shift = yi.sum - theta * (xi.sum - yi.n * x_bar)
        sq = (yi.sum_squares - 2 * theta * (ci - x_bar * yi.sum)
              + theta**2 * (xi.sum_squares - 2 * x_bar * xi.sum + yi.n * x_bar**2))  # fmt: skip
        out.append(MeanStats(yi.n, shift, sq))
    return out


def srm(observed: Sequence[int], weights: Sequence[float]) -> float:
    """The χ² goodness-of-fit p-value of the units per variation against the weights; a
    sample-ratio mismatch when below 0.001."""
    total = sum(observed)
    wsum = sum(weights)
    if total == 0 or len(observed) < 2:
        return 1.0
    chi2 = sum(
        (o - total * w / wsum) ** 2 / (total * w / wsum)
        for o, w in zip(observed, weights, strict=True)
        if w > 0
    )
    return float(_scipy_stats().chi2.sf(chi2, len(observed) - 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error), in the input's order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate), in the input's order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    adjusted = [0.0] * m
    running = 1.0
    for k, i in enumerate(order):
        rank = m - k
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = min(1.0, running)
    return adjusted


def power(n_per_arm: float, mean: float, sd: float, lift: float, alpha: float = 0.05) -> float:
    """The chance a two-sided test at `alpha` detects a relative `lift` on a metric with this
    control mean and standard deviation, with `n_per_arm` units in each of two arms."""
    se = sd * math.sqrt(2 / n_per_arm)
    delta = abs(mean * lift)
    z = _scipy_stats().norm.ppf(1 - alpha / 2)
    return float(_scipy_stats().norm.sf(z - delta / se) + _scipy_stats().norm.cdf(-z - delta / se))


def sample_size(
    mean: float, sd: float, lift: float, alpha: float = 0.05, target: float = 0.8
) -> int:
    """Units per arm for `target` power to detect a relative `lift`."""
    z = _scipy_stats().norm.ppf(1 - alpha / 2) + _scipy_stats().norm.ppf(target)
    return math.ceil(2 * (z * sd / (mean * lift)) ** 2)


def mde(
    n_per_arm: float, mean: float, sd: float, alpha: float = 0.05, target: float = 0.8
) -> float:
    """The smallest relative lift detected with `target` power at this sample size."""
    z = _scipy_stats().norm.ppf(1 - alpha / 2) + _scipy_stats().norm.ppf(target)
    return z * sd * math.sqrt(2 / n_per_arm) / abs(mean)

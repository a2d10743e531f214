"""The experiment statistics against textbook implementations (scipy, statsmodels) and by
simulation: A/A false-positive rate, observed vs analytic power, sequential tests under daily
peeking, CUPED's variance and bias, SRM at 52/48. Seeded: the same numbers every run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from traction.experiments.stats import (
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


def summarize(y: np.ndarray) -> MeanStats:
    return MeanStats(len(y), float(y.sum()), float((y * y).sum()))


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    for n_a, n_b, shift in ((50, 80, 0.3), (1000, 1200, 0.05), (20, 20, 0.0)):
        a, b = rng.normal(10, 2, n_a), rng.normal(10 + shift, 3, n_b)
        ours = frequentist(summarize(a), summarize(b))
        ref = sps.ttest_ind(b, a, equal_var=False)
        ci = ref.confidence_interval(0.95)
        assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert ours.difference_ci == pytest.approx((ci.low, ci.high), rel=1e-9)
        assert ours.df == pytest.approx(ref.df, rel=1e-9)


def test_lift_interval_by_the_delta_method_covers_the_truth() -> None:
    """Over 2,000 simulated experiments with a true lift of 10%, the 95% interval of the
    relative lift covers it 94-96% of the time (the delta method's promise)."""
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(2000):
        a, b = rng.exponential(10, 2000), rng.exponential(11, 2000)
        lo, hi = frequentist(summarize(a), summarize(b)).lift_ci
        hits += lo <= 0.1 <= hi
    assert 0.94 <= hits / 2000 <= 0.96


def test_ratio_metric_variance_matches_simulation() -> None:
    """Revenue per session: the delta-method variance of Σy/Σx equals the spread of the
    estimate over repeated samples, within 10%."""
    rng = np.random.default_rng(3)
    estimates, predicted = [], []
    for _ in range(1500):
        sessions = rng.poisson(3, 800) + 1
        revenue = rng.gamma(2, 5, 800) * sessions * rng.uniform(0.5, 1.5, 800)
        s = RatioStats(800, revenue.sum(), (revenue**2).sum(), sessions.sum(), (sessions**2).sum(),
                       (revenue * sessions).sum())  # fmt: skip
        estimates.append(s.mean)
        predicted.append(s.mean_variance)
    assert np.var(estimates) == pytest.approx(np.mean(predicted), rel=0.1)


def test_a_a_false_positive_rate_is_alpha() -> None:
    """1,000 A/A tests on conversion data: 4-6% significant at α = 0.05."""
    rng = np.random.default_rng(4)
    positives = sum(
        frequentist(summarize(rng.binomial(1, 0.1, 2000).astype(float)),
                    summarize(rng.binomial(1, 0.1, 2000).astype(float))).p_value < 0.05
        for _ in range(1000)
    )  # fmt: skip
    assert 40 <= positives <= 60


def test_observed_power_matches_the_analytic_power() -> None:
    """A true 10% lift on a 20% conversion rate with 2,500 per arm: the share of 1,000
    simulated tests that are significant is within 3 points of `power`."""
    rng = np.random.default_rng(5)
    p, n, lift = 0.2, 2500, 0.1
    expected = power(n, p, math.sqrt(p * (1 - p)), lift)
    hits = sum(
        frequentist(summarize(rng.binomial(1, p, n).astype(float)),
                    summarize(rng.binomial(1, p * (1 + lift), n).astype(float))).p_value < 0.05
        for _ in range(1000)
    )  # fmt: skip
    assert abs(hits / 1000 - expected) <= 0.03
    assert 0.3 < expected < 0.8  # a test where power is neither trivial nor certain


def test_power_sample_size_and_mde_agree_with_statsmodels() -> None:
    from statsmodels.stats.power import NormalIndPower

    mean, sd, lift = 0.2, 0.4, 0.05
    d = mean * lift / sd
    n_ref = NormalIndPower().solve_power(effect_size=d, alpha=0.05, power=0.8, ratio=1)
    assert sample_size(mean, sd, lift) == math.ceil(n_ref)
    assert power(10_000, mean, sd, lift) == pytest.approx(
        NormalIndPower().power(effect_size=d, nobs1=10_000, alpha=0.05, ratio=1), rel=1e-6
    )
    assert mde(sample_size(mean, sd, lift), mean, sd) == pytest.approx(lift, rel=1e-3)


def test_sequential_stays_within_alpha_under_daily_peeking() -> None:
    """1,000 A/A tests looked at every day for 30 days (100 units a day per arm): the
    sequential test ever rejects in at most 5%; the fixed-horizon test peeked at daily does
    in far more (the reason for the sequential one)."""
    rng = np.random.default_rng(6)
    seq_any = fixed_any = 0
    for _ in range(1000):
        a, b = rng.normal(0, 1, (30, 100)), rng.normal(0, 1, (30, 100))
        ca, cb = np.cumsum(a.sum(1)), np.cumsum(b.sum(1))
        qa, qb = np.cumsum((a * a).sum(1)), np.cumsum((b * b).sum(1))
        seq_hit = fixed_hit = False
        for day in range(30):
            n = 100 * (day + 1)
            sa, sb = MeanStats(n, ca[day], qa[day]), MeanStats(n, cb[day], qb[day])
            seq_hit |= sequential(sa, sb, tuning_n=6000).p_value < 0.05
            fixed_hit |= frequentist(sa, sb).p_value < 0.05
        seq_any += seq_hit
        fixed_any += fixed_hit
    assert seq_any / 1000 <= 0.05
    assert fixed_any / 1000 > 0.15


def test_sequential_interval_is_wider_and_consistent_with_its_p_value() -> None:
    rng = np.random.default_rng(7)
    a, b = summarize(rng.normal(10, 2, 3000)), summarize(rng.normal(10.2, 2, 3000))
    fixed, seq = frequentist(a, b), sequential(a, b)
    assert (
        seq.difference_ci[0] < fixed.difference_ci[0]
        and seq.difference_ci[1] > fixed.difference_ci[1]
    )
    excludes_zero = seq.difference_ci[0] > 0 or seq.difference_ci[1] < 0
    assert excludes_zero == (seq.p_value < 0.05)


def test_cuped_reduces_variance_and_stays_unbiased() -> None:
    """Pre-exposure values correlated 0.7 with the metric: the adjusted estimate's variance
    is about (1 − 0.49) of the plain one's, and its average over 1,000 experiments is the true
    difference (0.5)."""
    rng = np.random.default_rng(8)
    plain, adjusted, var_plain, var_adj = [], [], [], []
    for _ in range(1000):
        x = rng.normal(10, 3, (2, 1000))
        noise = rng.normal(0, 3 * math.sqrt(1 - 0.49) / 0.7, (2, 1000))
        y = x + noise
        y[1] += 0.5
        ys = [summarize(y[i]) for i in (0, 1)]
        xs = [summarize(x[i]) for i in (0, 1)]
        cross = [float((x[i] * y[i]).sum()) for i in (0, 1)]
        adj = cuped(ys, xs, cross)
        plain.append(ys[1].mean - ys[0].mean)
        adjusted.append(adj[1].mean - adj[0].mean)
        var_plain.append(ys[0].mean_variance + ys[1].mean_variance)
        var_adj.append(adj[0].mean_variance + adj[1].mean_variance)
    assert np.mean(adjusted) == pytest.approx(0.5, abs=0.01)
    assert np.mean(var_adj) / np.mean(var_plain) == pytest.approx(0.51, abs=0.03)
    assert np.var(adjusted) / np.var(plain) == pytest.approx(0.51, abs=0.08)  # and in fact


def test_bayesian_against_monte_carlo_and_a_hand_computed_posterior() -> None:
    rng = np.random.default_rng(9)
    a, b = summarize(rng.normal(10, 2, 500)), summarize(rng.normal(10.3, 2, 500))
    r = bayesian(a, b)
    lift = b.mean / a.mean - 1
    sd = math.sqrt(b.mean_variance / a.mean**2 + b.mean**2 * a.mean_variance / a.mean**4)
    draws = rng.normal(lift, sd, 2_000_000)
    assert r.chance_to_win == pytest.approx((draws > 0).mean(), abs=0.002)
    assert r.risk_variation == pytest.approx(np.maximum(0, -draws).mean(), rel=0.02)
    assert r.risk_control == pytest.approx(np.maximum(0, draws).mean(), rel=0.02)
    assert r.ci == pytest.approx((lift - 1.959964 * sd, lift + 1.959964 * sd), rel=1e-5)
    # a proper prior N(0, 0.01²) shrinks toward 0 by precision weighting
    shrunk = bayesian(a, b, prior_sd=0.01)
    w = (1 / sd**2) / (1 / sd**2 + 1 / 0.01**2)
    assert shrunk.lift == pytest.approx(w * lift, rel=1e-9)


def test_srm_fires_at_52_48_and_not_at_50_50() -> None:
    assert srm([10_400, 9_600], [0.5, 0.5]) < 0.001
    assert srm([10_030, 9_970], [0.5, 0.5]) > 0.5
    ref = sps.chisquare([3100, 3050, 3850], f_exp=[3333.3333, 3333.3333, 3333.3334])
    assert srm([3100, 3050, 3850], [1, 1, 1]) == pytest.approx(ref.pvalue, rel=1e-4)


def test_multiple_comparison_corrections_match_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04]
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert benjamini_hochberg(p) == pytest.approx(list(multipletests(p, method="fdr_bh")[1]))

"""The drift tests against figures worked out by hand (numpy only as a calculator) and scipy as a cross-check."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from warehouse.jobs.stats import (OTHER, PSI_EPSILON, bin_counts, chi_square_homogeneity, ks, label_shift, log_bin,
                                  psi, quantile_edges, two_proportion)


def psi_by_definition(reference_counts, current_counts, epsilon=PSI_EPSILON):
    r = np.maximum(np.array(reference_counts, float) / sum(reference_counts), epsilon)
    c = np.maximum(np.array(current_counts, float) / sum(current_counts), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def test_psi_of_two_histograms():
    # shares r = .1 .2 .3 .4, c = .2 .2 .3 .3: PSI = .1 ln 2 + 0 + 0 - .1 ln(.3/.4)
    result = psi([10, 20, 30, 40], [20, 20, 30, 30])
    assert result.statistic == pytest.approx(0.1 * math.log(2) - 0.1 * math.log(0.3 / 0.4))
    assert result.statistic == pytest.approx(0.0980829, abs=1e-6)
    assert result.verdict == "none" and result.p_value is None
    assert (result.n_reference, result.n_current) == (100, 100)


def test_psi_empty_bin_uses_epsilon():
    result = psi([50, 50, 0], [40, 50, 10])
    expected = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - PSI_EPSILON) * math.log(0.1 / PSI_EPSILON)
    assert result.statistic == pytest.approx(expected)
    assert result.verdict == "major"  # 0.0223 + 0.6899


def test_psi_verdict_levels():
    assert psi([10, 20, 30, 40], [20, 20, 30, 30], minor=0.05).verdict == "minor"
    assert psi([10, 20, 30, 40], [40, 30, 20, 10]).verdict == "major"
    assert psi([10, 20, 30, 40], [10, 20, 30, 40]).statistic == 0


def test_psi_over_reference_quantile_bins():
    reference = np.arange(1000, dtype=float)  # deciles by linear interpolation: 99.9, 199.8, ...
    current = np.concatenate([np.arange(300, 1000, dtype=float), np.arange(300, 600, dtype=float)])
    edges = quantile_edges(reference, 10)
    assert edges == pytest.approx([99.9 * i for i in range(1, 10)])
    bounds = [-np.inf] + [99.9 * i for i in range(1, 10)] + [np.inf]
    reference_counts = [int(((reference > lo) & (reference <= hi)).sum()) for lo, hi in zip(bounds, bounds[1:])]
    current_counts = [int(((current > lo) & (current <= hi)).sum()) for lo, hi in zip(bounds, bounds[1:])]
    assert reference_counts == [100] * 10
    assert current_counts == [0, 0, 0, 200, 200, 200, 100, 100, 100, 100]
    result = psi(bin_counts(reference, edges), bin_counts(current, edges))
    assert list(bin_counts(current, edges)) == current_counts
    # three bins at 0.1 -> 1e-4, three at 0.1 -> 0.2, four unchanged
    expected = 3 * (PSI_EPSILON - 0.1) * math.log(PSI_EPSILON / 0.1) + 3 * 0.1 * math.log(2)
    assert result.statistic == pytest.approx(expected)
    assert result.statistic == pytest.approx(psi_by_definition(reference_counts, current_counts))
    assert result.verdict == "major"


def test_quantile_edges_collapse_on_point_mass():
    assert list(quantile_edges([0.0] * 90 + [1.0] * 10, 10)) == pytest.approx([0.0, 0.1])  # 9th decile: 0.1 of 0 -> 1


def test_psi_rejects_different_bins():
    with pytest.raises(ValueError, match="same bins"):
        psi([1, 2], [1, 2, 3])


def test_chi_square_by_hand_and_scipy():
    reference, current = {"a": 50, "b": 30, "c": 20}, {"a": 30, "b": 40, "c": 30}
    # column totals 80, 70, 50; rows of 100 -> expected 40, 35, 25 in both rows
    by_hand = 2 * (10 ** 2 / 40 + 5 ** 2 / 35 + 5 ** 2 / 25)
    result = chi_square_homogeneity(reference, current)
    assert result.statistic == pytest.approx(by_hand) == pytest.approx(8.4285714)
    assert result.p_value == pytest.approx(math.exp(-by_hand / 2))  # chi2 survival with df = 2
    scipy_statistic, scipy_p, df, _ = scipy_stats.chi2_contingency([[50, 30, 20], [30, 40, 30]], correction=False)
    assert (result.statistic, result.p_value, result.detail["df"]) == (
        pytest.approx(scipy_statistic), pytest.approx(scipy_p), df)
    assert result.verdict == "none"  # p = 0.0148 > 0.01


def test_chi_square_merges_rare_labels():
    reference = {"a": 400, "b": 300, "c": 295, "d": 3, "e": 2}
    current = {"a": 380, "b": 330, "c": 282, "d": 4, "e": 4}
    result = chi_square_homogeneity(reference, current)
    assert result.detail["merged"] == ["d", "e"]  # expected 3.5 and 3 per row; merged 6.5
    assert result.detail["categories"] == ["a", "b", "c", OTHER]
    observed = np.array([[400, 300, 295, 5], [380, 330, 282, 8]], float)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    assert result.statistic == pytest.approx(float(((observed - expected) ** 2 / expected).sum()))
    assert result.p_value == pytest.approx(float(scipy_stats.chi2.sf(result.statistic, 3)))


def test_chi_square_folds_still_rare_other_into_smallest_label():
    result = chi_square_homogeneity({"a": 600, "b": 390, "c": 2, "d": 1}, {"a": 590, "b": 400, "c": 1, "d": 1})
    assert result.detail["merged"] == ["b", "c", "d"]  # (other) had 5 of 1985 -> 2.5 expected per row
    assert result.detail["categories"] == ["a", OTHER] and result.detail["df"] == 1


def test_two_proportion_by_hand():
    result = two_proportion(500, 1000, 600, 1000)
    se = math.sqrt(0.55 * 0.45 * (1 / 1000 + 1 / 1000))
    assert result.statistic == pytest.approx(0.1 / se) == pytest.approx(4.494666, abs=1e-5)
    assert result.p_value == pytest.approx(math.erfc(4.494666 / math.sqrt(2)), rel=1e-4)  # 2 (1 - Phi(z))
    chi2, p, _, _ = scipy_stats.chi2_contingency([[500, 500], [600, 400]], correction=False)
    assert result.statistic ** 2 == pytest.approx(chi2) and result.p_value == pytest.approx(p)
    assert result.verdict == "drift" and result.effect == pytest.approx(0.1)


def test_two_proportion_degenerate_and_small():
    assert two_proportion(0, 500, 0, 500).p_value == 1.0
    small = two_proportion(1, 100, 3, 100)
    assert small.detail["small_expected_counts"] is True
    assert two_proportion(5, 20, 6, 20, min_samples=50).verdict == "insufficient"


def test_label_shift_needs_significance_and_size():
    shifted = label_shift({"approve": 1000, "decline": 1000}, {"approve": 1200, "decline": 800})
    assert shifted.test == "two_proportion" and shifted.verdict == "drift"
    assert shifted.effect == pytest.approx(0.1) and shifted.detail["label"] == "approve"
    # a one-point move on two million records is significant, yet below min_share_change
    tiny = label_shift({"approve": 500_000, "decline": 500_000}, {"approve": 510_000, "decline": 490_000})
    assert tiny.p_value < 1e-10 and tiny.verdict == "none"
    three = label_shift({"a": 50, "b": 30, "c": 20}, {"a": 30, "b": 40, "c": 30}, alpha=0.05)
    assert three.test == "chi_square" and three.verdict == "drift"
    assert three.effect == pytest.approx(0.2) and three.detail["largest_change_label"] == "a"


def test_insufficient_claims_nothing():
    result = label_shift({"a": 5, "b": 4}, {"a": 9}, min_samples=10)
    assert result.verdict == "insufficient"
    assert (result.statistic, result.p_value, result.effect) == (None, None, None)
    assert (result.n_reference, result.n_current) == (9, 9)
    assert psi([1, 2], [3, 4], min_samples=10).verdict == "insufficient"
    assert ks([1.0] * 5, [2.0] * 50, min_samples=10).verdict == "insufficient"


def test_ks_hand_example():
    reference, current = [1, 2, 3, 4, 5], [3, 4, 5, 6, 7, 8]
    # ECDF gaps at 1..8: .2, .4, .6-1/6, .8-2/6, 1-3/6, 1-4/6, ... -> largest 0.5 at x = 5
    grid = np.arange(1, 9)
    gaps = [abs(np.mean(np.array(reference) <= x) - np.mean(np.array(current) <= x)) for x in grid]
    assert max(gaps) == pytest.approx(0.5)
    result = ks(reference, current, alpha=0.05)
    assert result.statistic == pytest.approx(0.5)
    assert result.p_value == pytest.approx(scipy_stats.ks_2samp(reference, current, method="exact").pvalue)
    critical = math.sqrt(-math.log(0.025) / 2) * math.sqrt(11 / 30)
    assert result.threshold == pytest.approx(critical) and result.verdict == "none"


def test_ks_flags_a_shift():
    rng = np.random.default_rng(7)
    result = ks(rng.normal(0, 1, 5000), rng.normal(0.2, 1, 5000))
    assert result.verdict == "drift" and result.effect > result.threshold


def test_log_bins_are_half_octaves():
    values = [0, 0.5, 1, 1.5, 2, 3, 1000]
    # floor(2 log2 x): 1 -> 0, 1.5 -> 1.17, 2 -> 2, 3 -> 3.17, 1000 -> 19.93
    assert list(log_bin(values)) == [-1, -1, 0, 1, 2, 3, 19]

"""The drift tests, as pure functions over counts (or, for KS, samples).

Every function returns a ``TestResult``: the test, its statistic, the p-value where
the test has one, both sample sizes, the *effect* (the figure in the unit a person
reads: a share change, a difference of rates, PSI, the KS distance), the threshold
the effect is held against, and a verdict:

* ``insufficient`` when either side has fewer than ``min_samples`` observations:
  no statistic is claimed at all;
* ``none`` / ``drift`` for the hypothesis tests (chi-square, two-proportion, KS);
* ``none`` / ``minor`` / ``major`` for PSI.

Formulas and the reasons for each choice are in README.md ("Drift").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

def _scipy_stats():
    """scipy.stats, imported on first use: 60 MB that a collector-only server never needs."""
    from scipy import stats

    return stats


PSI_EPSILON = 1e-4  # share given to an empty bin, so ln(c/r) stays finite
MIN_EXPECTED = 5.0  # Cochran: every expected cell count of a chi-square table at least this
OTHER = "(other)"  # the merged category of labels too rare for the chi-square approximation
LOG_BINS_PER_OCTAVE = 2  # log-scale bins are half octaves: edges at 2^(j/2)


@dataclass(frozen=True)
class TestResult:
    test: str  # "chi_square" | "two_proportion" | "psi" | "ks"
    statistic: float | None
    p_value: float | None
    n_reference: int
    n_current: int
    verdict: str  # "none" | "minor" | "major" | "drift" | "insufficient"
    effect: float | None = None  # share change, rate difference, PSI or KS distance
    threshold: float | None = None  # the effect's threshold (same unit as effect)
    alpha: float | None = None  # the p-value level, for tests that have a p-value
    detail: dict[str, Any] = field(default_factory=dict)


def insufficient(test: str, n_reference: int, n_current: int, min_samples: int, reason: str = "") -> TestResult:
    """Too few observations on a side: the result says so and claims no statistic."""
    return TestResult(test, None, None, int(n_reference), int(n_current), "insufficient",
                      detail={"reason": reason or f"fewer than {min_samples} observations on a side"})


def _too_few(n_reference: int, n_current: int, min_samples: int) -> bool:
    return min(n_reference, n_current) < max(min_samples, 1)


# --- proportions and categories -------------------------------------------------------------

def two_proportion(x_reference: int, n_reference: int, x_current: int, n_current: int, *,
                   alpha: float = 0.01, min_change: float = 0.0, min_samples: int = 1) -> TestResult:
    """Pooled two-sided z-test of p_current = p_reference.

    z = (p_c - p_r) / sqrt(p (1 - p) (1/n_r + 1/n_c)), p = (x_r + x_c) / (n_r + n_c);
    p-value = 2 (1 - Phi(|z|)). Drift when p-value < alpha and |p_c - p_r| >= min_change
    (with millions of records a change of a tenth of a point is "significant" yet not news).
    """
    if _too_few(n_reference, n_current, min_samples):
        return insufficient("two_proportion", n_reference, n_current, min_samples)
    share_r, share_c = x_reference / n_reference, x_current / n_current
    pooled = (x_reference + x_current) / (n_reference + n_current)
    variance = pooled * (1 - pooled) * (1 / n_reference + 1 / n_current)
    z = 0.0 if variance == 0 else (share_c - share_r) / math.sqrt(variance)
    p_value = float(2 * _scipy_stats().norm.sf(abs(z)))
    change = share_c - share_r
    smallest_expected = min(n * q for n in (n_reference, n_current) for q in (pooled, 1 - pooled))
    verdict = "drift" if p_value < alpha and abs(change) >= min_change else "none"
    return TestResult("two_proportion", z, p_value, n_reference, n_current, verdict, change, min_change, alpha,
                      {"reference_share": share_r, "current_share": share_c, "pooled_share": pooled,
                       "small_expected_counts": smallest_expected < MIN_EXPECTED})


def label_shift(reference: Mapping[str, int], current: Mapping[str, int], *, alpha: float = 0.01,
                min_share_change: float = 0.05, min_samples: int = 1) -> TestResult:
    """Shift of a categorical distribution (decision labels) between two windows.

    The effect is the largest absolute change of one label's share. The test is a
    two-proportion z-test when there are exactly two labels (on the first label's
    share; z^2 equals the chi-square statistic), else a chi-square test of
    homogeneity on the 2 x k table (``chi_square_homogeneity``). Drift needs both:
    p-value < alpha and the largest share change >= min_share_change.
    """
    n_r, n_c = sum(reference.values()), sum(current.values())
    labels = sorted(set(reference) | set(current))
    if _too_few(n_r, n_c, min_samples):
        return insufficient("chi_square" if len(labels) != 2 else "two_proportion", n_r, n_c, min_samples)
    shares_r = {label: reference.get(label, 0) / n_r for label in labels}
    shares_c = {label: current.get(label, 0) / n_c for label in labels}
    moved = max(labels, key=lambda label: (abs(shares_c[label] - shares_r[label]), label))
    change = shares_c[moved] - shares_r[moved]
    if len(labels) == 2:
        first = labels[0]
        test = two_proportion(reference.get(first, 0), n_r, current.get(first, 0), n_c, alpha=alpha)
        detail = {**test.detail, "label": first}
    else:
        test = chi_square_homogeneity(reference, current, alpha=alpha)
        detail = dict(test.detail)
    detail.update({"reference_shares": shares_r, "current_shares": shares_c, "largest_change_label": moved})
    verdict = "drift" if test.p_value is not None and test.p_value < alpha and abs(change) >= min_share_change \
        else "none"
    return TestResult(test.test, test.statistic, test.p_value, n_r, n_c, verdict, abs(change),
                      min_share_change, alpha, detail)


def chi_square_homogeneity(reference: Mapping[str, int], current: Mapping[str, int], *,
                           alpha: float = 0.01, min_samples: int = 1) -> TestResult:
    """Pearson chi-square test that two count vectors come from one categorical distribution.

    Expected count E_sj = N_s * C_j / N (row total x column total / grand total);
    X^2 = sum (O - E)^2 / E over both rows, df = k - 1 (k categories after merging),
    p-value = P(chi2_df >= X^2). The chi-square approximation needs every E >= 5:
    categories below that are merged into "(other)"; if "(other)" is still below 5 it
    is merged into the smallest remaining category. Fewer than two categories left:
    nothing can differ, X^2 = 0, p = 1. ``detail["merged"]`` lists what was merged.
    """
    n_r, n_c = sum(reference.values()), sum(current.values())
    if _too_few(n_r, n_c, min_samples):
        return insufficient("chi_square", n_r, n_c, min_samples)
    table, merged = _merge_rare({label: (reference.get(label, 0), current.get(label, 0))
                                 for label in sorted(set(reference) | set(current))}, n_r, n_c)
    if len(table) < 2:
        return TestResult("chi_square", 0.0, 1.0, n_r, n_c, "none", alpha=alpha,
                          detail={"df": 0, "merged": merged, "categories": list(table)})
    observed = np.array(list(table.values()), dtype=float).T  # 2 x k
    expected = np.outer([n_r, n_c], observed.sum(axis=0)) / (n_r + n_c)
    statistic = float(((observed - expected) ** 2 / expected).sum())
    df = len(table) - 1
    p_value = float(_scipy_stats().chi2.sf(statistic, df))
    return TestResult("chi_square", statistic, p_value, n_r, n_c, "drift" if p_value < alpha else "none",
                      alpha=alpha, detail={"df": df, "merged": merged, "categories": list(table)})


def _merge_rare(table: dict[str, tuple[int, int]], n_r: int, n_c: int) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Merge categories whose smaller expected count is below MIN_EXPECTED (see chi_square_homogeneity)."""
    smaller = min(n_r, n_c) / (n_r + n_c)  # E of the smaller row = smaller * column total
    rare = [label for label, (r, c) in table.items() if (r + c) * smaller < MIN_EXPECTED]
    if not rare:
        return table, []
    kept = {label: counts for label, counts in table.items() if label not in rare}
    other = (sum(table[label][0] for label in rare), sum(table[label][1] for label in rare))
    if sum(other) * smaller < MIN_EXPECTED and kept:
        smallest = min(kept, key=lambda label: (sum(kept[label]), label))
        other = (other[0] + kept[smallest][0], other[1] + kept[smallest][1])
        rare.append(smallest)
        del kept[smallest]
    kept[OTHER] = other
    return kept, sorted(rare)


# --- distributions ------------------------------------------------------------------------------

def psi(reference: Sequence[int], current: Sequence[int], *, minor: float = 0.1, major: float = 0.25,
        min_samples: int = 1, epsilon: float = PSI_EPSILON) -> TestResult:
    """Population stability index of two histograms over the same bins.

    r_i, c_i = bin shares, each floored at ``epsilon`` (an empty bin would make ln
    infinite); PSI = sum (c_i - r_i) ln(c_i / r_i). Bins empty on both sides add 0.
    Verdict: >= ``major`` major, >= ``minor`` minor, else none. ``detail`` holds the
    shares and the value PSI takes on average with no change at all,
    (k - 1)(1/n_r + 1/n_c) for k non-empty bins, to judge small samples by.
    """
    counts_r, counts_c = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if counts_r.shape != counts_c.shape:
        raise ValueError(f"PSI needs histograms over the same bins, got {counts_r.size} and {counts_c.size} bins")
    n_r, n_c = int(counts_r.sum()), int(counts_c.sum())
    if _too_few(n_r, n_c, min_samples):
        return insufficient("psi", n_r, n_c, min_samples)
    shares_r, shares_c = counts_r / n_r, counts_c / n_c
    floored_r, floored_c = np.maximum(shares_r, epsilon), np.maximum(shares_c, epsilon)
    value = float(((floored_c - floored_r) * np.log(floored_c / floored_r)).sum())
    occupied = int(((counts_r + counts_c) > 0).sum())
    verdict = "major" if value >= major else "minor" if value >= minor else "none"
    return TestResult("psi", value, None, n_r, n_c, verdict, value, minor, None, {
        "minor": minor, "major": major, "epsilon": epsilon,
        "reference_shares": [round(float(s), 6) for s in shares_r],
        "current_shares": [round(float(s), 6) for s in shares_c],
        "no_change_level": (occupied - 1) * (1 / n_r + 1 / n_c)})


def quantile_edges(reference: Sequence[float], bins: int) -> np.ndarray:
    """Inner edges of ``bins`` reference-quantile bins (linear interpolation), duplicates dropped.

    A point mass (many equal scores) makes several quantiles equal: they collapse into
    one edge, so there are fewer, unequal bins rather than empty ones.
    """
    values = np.asarray(reference, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.array([], dtype=float)
    return np.unique(np.quantile(values, np.arange(1, bins) / bins))


def bin_counts(values: Sequence[float], edges: Sequence[float]) -> np.ndarray:
    """Counts per bin (-inf, e1], (e1, e2], ..., (e_last, inf): bin = number of edges below the value."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return np.bincount(np.searchsorted(np.asarray(edges, dtype=float), values, side="left"),
                       minlength=len(edges) + 1)


def log_bin(values: Sequence[float]) -> np.ndarray:
    """Half-octave bin of each value: floor(2 log2 x) for x >= 1, -1 below 1 (0 tokens, sub-ms latency)."""
    values = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        bins = np.floor(LOG_BINS_PER_OCTAVE * np.log2(np.where(values >= 1, values, 1.0)))
    return np.where(values >= 1, bins, -1).astype(np.int64)


def align(reference: Mapping[Any, int], current: Mapping[Any, int]) -> tuple[list[Any], list[int], list[int]]:
    """Two sparse histograms (bin -> count) as dense count lists over the union of their bins."""
    keys = sorted(set(reference) | set(current))
    return keys, [int(reference.get(k, 0)) for k in keys], [int(current.get(k, 0)) for k in keys]


def ks(reference: Sequence[float], current: Sequence[float], *, alpha: float = 0.01,
       min_samples: int = 1) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test: D = sup |F_r(x) - F_c(x)| of the empirical CDFs.

    p-value from scipy's ``ks_2samp`` (exact distribution when both samples have at most
    10,000 values, the asymptotic Kolmogorov distribution beyond). The threshold is the
    asymptotic critical distance sqrt(-ln(alpha/2)/2) sqrt((n+m)/(n m)), so effect >=
    threshold reads as "significant at alpha". With ties (token counts) the p-value is
    conservative.
    """
    values_r = np.asarray(reference, dtype=float)
    values_c = np.asarray(current, dtype=float)
    values_r, values_c = values_r[~np.isnan(values_r)], values_c[~np.isnan(values_c)]
    n_r, n_c = values_r.size, values_c.size
    if _too_few(n_r, n_c, min_samples):
        return insufficient("ks", n_r, n_c, min_samples)
    result = _scipy_stats().ks_2samp(values_r, values_c, method="auto")
    statistic, p_value = float(result.statistic), float(result.pvalue)
    critical = math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n_r + n_c) / (n_r * n_c))
    return TestResult("ks", statistic, p_value, n_r, n_c, "drift" if p_value < alpha else "none",
                      statistic, critical, alpha, {"location": float(result.statistic_location)})

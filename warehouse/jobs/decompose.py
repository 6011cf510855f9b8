"""Week-over-week cost change split into volume, mix, rate and price effects that add up exactly.

Cost of a key (a service, or everything) is a sum over its cells (models):

    C = Σ_m N · s_m · t_m · p_m

N requests in all (volume), s_m = n_m / N the model's share (mix), t_m = q_m / n_m
quantity per request (rate: tokens per request) and p_m = c_m / q_m cost per unit
(price: cost per token). Each cell's change f_m(x¹) − f_m(x⁰) is split by the
Shapley value of the four factors: factor i gets the average, over every order in
which the four factors could switch from the previous to the current period, of
the change in f_m when i switches. For a product of four factors that is

    φ_i = (x¹_i − x⁰_i) · Σ_{S ⊆ others(i)} w(|S|) · Π_{j∈S} x¹_j · Π_{j∉S, j≠i} x⁰_j
    w(0) = w(3) = 1/4,  w(1) = w(2) = 1/12

and the four φ_i sum to f_m(x¹) − f_m(x⁰) exactly (Shapley efficiency), so the
effects summed over cells add up to the total change. Zeros need no special
formula: a factor that is undefined in one period (t and p of a model with no
requests, s of a key with no requests) takes its value from the other period. A
model that appears or disappears therefore changes only volume and mix, and
f_m(x⁰) = 0 still holds because its share (or the volume) is 0.

A cell whose requests carry no tokens in a period (per-request prices, capacity
pools) uses requests as its quantity in both periods: t = 1, p = cost per request.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import factorial, prod

FACTORS = ("volume", "mix", "rate", "price")


@dataclass(frozen=True)
class Cell:
    """One model's priced requests, tokens and cost in one period."""

    requests: float = 0.0
    tokens: float = 0.0
    cost: float = 0.0


def shapley_product(before: list[float], after: list[float]) -> list[float]:
    """Shapley value of each factor for the change of their product from ``before`` to ``after``."""
    k = len(before)
    effects = []
    for i in range(k):
        others = [j for j in range(k) if j != i]
        weighted = 0.0
        for size in range(k):
            weight = factorial(size) * factorial(k - 1 - size) / factorial(k)
            for switched in combinations(others, size):
                weighted += weight * prod(after[j] if j in switched else before[j] for j in others)
        effects.append((after[i] - before[i]) * weighted)
    return effects


def decompose(previous: dict[str, Cell], current: dict[str, Cell]) -> dict[str, dict[str, float]]:
    """Per cell, its volume, mix, rate and price effects; all of them sum to the change in total cost."""
    totals = [sum(c.requests for c in period.values()) for period in (previous, current)]
    effects = {}
    for name in sorted(set(previous) | set(current), key=lambda n: (n is None, n or "")):
        cells = (previous.get(name, Cell()), current.get(name, Cell()))
        if not any(c.requests for c in cells):
            continue
        factors = _factors(cells, totals)
        effects[name] = dict(zip(FACTORS, shapley_product(*factors)))
    return effects


def counts_tokens(cells: tuple[Cell, Cell]) -> bool:
    """Tokens are the cell's quantity unless its requests carry none in a period (then: requests)."""
    return all(c.tokens > 0 for c in cells if c.requests > 0)


def _factors(cells: tuple[Cell, Cell], totals: list[float]) -> tuple[list[float], list[float]]:
    """(N, s, t, p) of one cell in each period, undefined values taken from the other period."""
    by_tokens = counts_tokens(cells)
    quantity = [c.tokens if by_tokens else c.requests for c in cells]
    share = [c.requests / n if n else None for c, n in zip(cells, totals)]
    rate = [q / c.requests if c.requests else None for c, q in zip(cells, quantity)]
    price = [c.cost / q if q else None for c, q in zip(cells, quantity)]
    values = [list(totals), share, rate, price]
    for pair in values:
        pair[0] = pair[1] if pair[0] is None else pair[0]
        pair[1] = pair[0] if pair[1] is None else pair[1]
    return [v[0] for v in values], [v[1] for v in values]

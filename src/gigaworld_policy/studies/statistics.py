"""Intervals of success rates: Wilson per task, Student's t over training seeds, Newcombe for a pooled difference.

Rates are fractions in [0, 1]; a run's result counts episodes as `{"tasks": {task: {"successes", "episodes"}}}`.
"""

from __future__ import annotations

import math

import numpy as np

from ..extras import require


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval (low, high) of a success rate (Wilson score; sane at 0 and n)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def seed_interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and 95% t-interval half-width of one figure over training seeds (None with one seed: no interval)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None
    # Student's t, two-sided 95%: with three seeds a normal quantile (1.96) would cover only ~81%
    t95 = require("scipy.stats", "the t-interval over training seeds").t.ppf(0.975, df=len(values) - 1)
    return mean, float(t95) * float(np.std(values, ddof=1)) / math.sqrt(len(values))


def pooled_successes(runs: list[dict]) -> tuple[int, int]:
    """(successes, episodes) of run results, summed over every task and run (training seed)."""
    return (sum(t["successes"] for r in runs for t in r["tasks"].values()),
            sum(t["episodes"] for r in runs for t in r["tasks"].values()))


def pooled_difference(counts: tuple[int, int], other_counts: tuple[int, int]) -> tuple[float, float, float]:
    """Success rate minus the other's, from (successes, episodes) pooled, with its 95% interval: (difference, low,
    high) as fractions. Newcombe's hybrid score interval (the two Wilson intervals combined), which stays sane where
    Wald's collapses: at 0/20 against 0/20 it is -16 to +16 points, not 0 to 0. It treats every episode as
    independent (no seed-to-seed spread)."""
    (wins, trials), (other_wins, other_trials) = counts, other_counts
    p, q = wins / trials, other_wins / other_trials
    p_low, p_high = wilson_interval(wins, trials)
    q_low, q_high = wilson_interval(other_wins, other_trials)
    difference = p - q
    return (difference, difference - math.hypot(p - p_low, q_high - q),
            difference + math.hypot(p_high - p, q - q_low))

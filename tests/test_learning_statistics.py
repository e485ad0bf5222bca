"""The statistics behind the learning benchmarks' tables (benchmarks/learning.py): the intervals they publish."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from learning import interval, pooled_difference, video_loss_rows  # noqa: E402


def run(seed: int, successes: int, episodes: int = 10) -> dict:
    """A stored run's result, as much of it as the statistics read: one task."""
    return {"seed": seed, "average_success_rate": successes / episodes,
            "tasks": {"reach-v3": {"successes": successes, "episodes": episodes}}}


def test_the_seed_interval_covers_the_true_mean_95_percent_of_the_time_with_three_seeds():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(4000):
        mean, half = interval(list(rng.normal(0.6, 0.1, size=3)))
        covered += abs(mean - 0.6) <= half
    # a normal quantile (1.96) in place of Student's t would cover only ~81% with three seeds
    assert 0.93 < covered / 4000 < 0.97


def test_one_seed_has_a_mean_and_no_interval():
    assert interval([0.7]) == (0.7, None)


def test_pooled_difference_is_in_points_with_a_wald_interval():
    # 0.6 - 0.5 = +10 points; half-width 1.96 * sqrt(0.6*0.4/100 + 0.5*0.5/100) = 13.7 points
    assert pooled_difference((60, 100), (50, 100)) == "+10 (-4 to +24)"
    assert pooled_difference((50, 100), (60, 100)) == "-10 (-24 to +4)"


def test_video_loss_rows_compare_only_the_seeds_both_variants_ran():
    results = {"gwp_cnn": [run(0, 8), run(1, 9), run(2, 7)], "baseline": [run(0, 6), run(2, 6)]}
    [(video, without, pooled, per_seed)] = video_loss_rows(results)
    assert (video, without) == ("gwp_cnn", "baseline")
    assert per_seed.startswith("+20, +10 (mean +15 ± ")  # seeds 0 and 2; seed 1 has no partner
    assert pooled.startswith("+20 ")  # every episode: 24/30 against 12/20


def test_video_loss_rows_skip_a_variant_whose_partner_did_not_run():
    assert video_loss_rows({"gwp_cnn": [run(0, 8)], "action_only": [run(0, 5)]}) == []

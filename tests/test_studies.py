"""gigaworld_policy.studies: the intervals the studies publish, the stored results they accept, and the sections of
docs/RESULTS.md, which must come out of the stored results exactly as they stand in the file."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gigaworld_policy.studies.report import (
    StudySettings,
    chunk_effect_section,
    cross_embodiment_section,
    expert_effect,
    learning_section,
    paired_rows,
    points,
    prior_effect,
    read_section,
    temperature_section,
    video_loss_rows,
    write_learning,
    write_section,
)
from gigaworld_policy.studies.results import (
    finished_runs,
    lacks_heldout_scores,
    mean_training_curve,
    restore_results,
    run_folder,
    setup_differences,
    training_curve,
)
from gigaworld_policy.studies.statistics import pooled_difference, seed_interval, wilson_interval
from gigaworld_policy.studies.variants import PRIOR_PAIRS

RESULTS_MD = Path(__file__).parents[1] / "docs" / "RESULTS.md"


def run(seed: int, successes: int, episodes: int = 10) -> dict:
    """A stored run's result, as much of it as the statistics read: one task."""
    return {"seed": seed, "average_success_rate": successes / episodes,
            "tasks": {"reach-v3": {"successes": successes, "episodes": episodes}}}


def test_the_seed_interval_covers_the_true_mean_95_percent_of_the_time_with_three_seeds():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(4000):
        mean, half = seed_interval(list(rng.normal(0.6, 0.1, size=3)))
        covered += abs(mean - 0.6) <= half
    # a normal quantile (1.96) in place of Student's t would cover only ~81% with three seeds
    assert 0.93 < covered / 4000 < 0.97


def test_one_seed_has_a_mean_and_no_interval():
    assert seed_interval([0.7]) == (0.7, None)


def test_the_wilson_interval_covers_the_true_rate_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = [wilson_interval(int(k), 30) for k in rng.binomial(30, 0.2, size=4000)]
    assert 0.93 < np.mean([low <= 0.2 <= high for low, high in hits]) < 0.98
    assert wilson_interval(0, 30)[0] == 0.0 and wilson_interval(30, 30)[1] == 1.0  # sane at 0 and n
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_pooled_difference_is_in_points_with_newcombes_interval():
    # Newcombe (1998), Table II, method 10: 56/70 - 48/80 and 9/10 - 3/10
    assert pooled_difference((56, 70), (48, 80)) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)
    assert pooled_difference((9, 10), (3, 10)) == pytest.approx((0.6, 0.1705, 0.8090), abs=1e-4)
    assert points(pooled_difference((60, 100), (50, 100))) == "+10 (-4 to +23)"
    assert points(pooled_difference((50, 100), (60, 100))) == "-10 (-23 to +4)"
    assert points(pooled_difference((0, 20), (0, 20))) == "+0 (-16 to +16)"  # Wald's would be 0 to 0


def test_the_pooled_difference_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    draws = zip(rng.binomial(30, 0.9, size=4000), rng.binomial(30, 0.7, size=4000), strict=True)
    hits = [pooled_difference((int(a), 30), (int(b), 30)) for a, b in draws]
    assert 0.93 < np.mean([low <= 0.2 <= high for _, low, high in hits]) < 0.98


def test_video_loss_rows_compare_only_the_seeds_both_variants_ran():
    results = {"gwp_cnn": [run(0, 8), run(1, 9), run(2, 7)], "baseline": [run(0, 6), run(2, 6)]}
    [(video, without, pooled, per_seed)] = video_loss_rows(results)
    assert (video, without) == ("gwp_cnn", "baseline")
    assert per_seed.startswith("+20, +10 (mean +15 ± ")  # seeds 0 and 2; seed 1 has no partner
    assert pooled.startswith("+20 ")  # every episode: 24/30 against 12/20


def test_video_loss_rows_skip_a_variant_whose_partner_did_not_run():
    assert video_loss_rows({"gwp_cnn": [run(0, 8)], "action_only": [run(0, 5)]}) == []


def test_the_prior_is_set_against_scratch_with_the_same_losses():
    results = {"prior_cnn": [run(0, 9), run(1, 8)], "gwp_cnn": [run(0, 5), run(1, 6)],
               "prior_baseline": [run(0, 7), run(1, 7)], "baseline": [run(0, 4), run(1, 4)]}
    rows = paired_rows(results, PRIOR_PAIRS)
    assert [(prior, scratch) for prior, scratch, _, _ in rows] == list(PRIOR_PAIRS)
    assert PRIOR_PAIRS == (("prior_cnn", "gwp_cnn"), ("prior_baseline", "baseline"))
    assert rows[0][3].startswith("+40, +20 (mean +30 ± ") and rows[1][3].startswith("+30, +30 (mean +30 ± 0)")
    table = prior_effect(results)
    assert "| prior_cnn | gwp_cnn | +30 " in "\n".join(table)
    assert prior_effect({"prior_cnn": results["prior_cnn"], "baseline": results["baseline"]}) == []  # no partner


def test_the_action_expert_is_set_against_the_same_network_without_it():
    results = {"gwp_cnn_expert": [run(0, 9), run(1, 10)], "gwp_cnn": [run(0, 9), run(1, 7)], "baseline": [run(0, 1)]}
    table = "\n".join(expert_effect(results))
    assert "| with the expert | without | with minus without, pooled (points) | per seed |" in table
    assert "| gwp_cnn_expert | gwp_cnn | +15 " in table and "+0, +30 (mean +15 ± " in table
    assert "baseline" not in table  # not the expert's partner
    assert expert_effect({"gwp_cnn_expert": results["gwp_cnn_expert"]}) == []


def test_a_stored_setup_is_compared_with_the_defaults_of_keys_added_since():
    setup = {"episodes": 20, "observe_goal": False, "normalization": "quantile", "policy": {"clean_action_prob": 0.0,
                                                                                         "transformer": {"dim": 64}}}
    # stored before observe_goal, the normalisation and the whole policy config were recorded
    old = {"episodes": 20, "network": {"dim": 64}}
    assert setup_differences(old, setup) == ["normalization"]  # old results used clipped quantiles
    assert setup_differences(old, {**setup, "normalization": "quantile, clipped"}) == []
    assert setup_differences({**old, "network": {"dim": 32}}, {**setup, "normalization": "quantile, clipped"}) == [
        "policy.transformer"]
    newer = {"episodes": 5, "observe_goal": False, "normalization": "quantile", "policy": {"transformer": {"dim": 64}}}
    assert setup_differences(newer, setup) == ["episodes"]  # clean_action_prob: stored before it, 0 then
    # runs stored before --execution existed were evaluated chunk by chunk
    assert setup_differences(newer, {**setup, "episodes": 5, "execution": "sync"}) == []
    assert setup_differences(newer, {**setup, "episodes": 5, "execution": "ensemble"}) == ["execution"]


def test_the_section_says_how_the_closed_loop_executed_the_chunks():
    chunked = learning_section({}, SETTINGS, LEARNING_COMMAND)
    ensembled = learning_section({}, replace(SETTINGS, execution="ensemble", execute_steps=1), LEARNING_COMMAND)
    assert "executing 8 actions per plan" in chunked and "ensembling" not in chunked
    assert "a plan every step, each step executing the weighted mean of the plans covering it" in ensembled
    assert "actions per plan" not in ensembled


def test_results_stored_before_the_heldout_scores_are_scored_again():
    assert lacks_heldout_scores({"variant": "baseline"})
    assert lacks_heldout_scores({"variant": "gwp", "open_loop_heldout": {"action_mse": 0.1}})
    assert not lacks_heldout_scores({"variant": "baseline", "open_loop_heldout": {"action_mse": 0.1}})


def test_a_section_is_replaced_in_place_appended_when_new_and_a_half_marked_file_is_refused(tmp_path):
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Results\n\n<!-- learning a:begin -->\nold\n<!-- learning a:end -->\n\ntail\n")
    write_section(results_md, "learning", "a", "<!-- learning a:begin -->\nnew\n<!-- learning a:end -->")
    write_section(results_md, "learning", "a-b", "<!-- learning a-b:begin -->\nmore\n<!-- learning a-b:end -->")
    assert results_md.read_text() == ("# Results\n\n<!-- learning a:begin -->\nnew\n<!-- learning a:end -->\n\ntail\n\n"
                                      "<!-- learning a-b:begin -->\nmore\n<!-- learning a-b:end -->\n")
    assert read_section(results_md, "learning", "a-b") == "<!-- learning a-b:begin -->\nmore\n<!-- learning a-b:end -->"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RESULTS.md"]  # written by one rename, nothing left over
    results_md.write_text("<!-- learning a:begin -->\ncut short\n")
    with pytest.raises(ValueError, match="not '<!-- learning a:end -->'"):
        write_section(results_md, "learning", "a", "<!-- learning a:begin -->\nnew\n<!-- learning a:end -->")
    with pytest.raises(ValueError, match="must start with"):
        write_section(results_md, "learning", "b", "no markers")


# The study mt10-goal-state-noisy-12000steps of docs/RESULTS.md, as stored results: its files are not in the
# repository, so these are successes per (training seed, task) that add up to its published per-seed and per-task
# figures, with its held-out errors, latencies and resumed runs.
MT10 = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3")
STUDY = "mt10-goal-state-noisy-12000steps"
SUCCESSES = {  # (variant, temperature): one row of 10-episode successes per seed, tasks in MT10 order
    ("gwp_cnn", 1): [[8, 0, 3, 8, 8, 10, 10, 3, 9, 10], [9, 1, 3, 9, 10, 10, 10, 2, 10, 10],
                     [8, 1, 3, 8, 8, 10, 10, 3, 8, 9]],
    ("baseline", 1): [[7, 2, 2, 8, 10, 10, 8, 0, 6, 9], [6, 2, 1, 8, 9, 10, 8, 1, 7, 9],
                      [7, 1, 2, 7, 10, 10, 9, 1, 7, 10]],
    ("gwp_cnn", 0): [[8, 3, 4, 10, 10, 10, 10, 4, 10, 10], [7, 3, 5, 10, 9, 10, 10, 4, 8, 10],
                     [10, 4, 5, 10, 10, 10, 10, 4, 10, 10]],
    ("baseline", 0): [[7, 2, 2, 10, 10, 10, 10, 0, 7, 10], [6, 2, 3, 9, 10, 10, 10, 0, 8, 10],
                      [7, 1, 3, 9, 10, 10, 10, 1, 7, 10]],
}
ACTION_MSE = {("gwp_cnn", 1): 0.135, ("baseline", 1): 0.133, ("gwp_cnn", 0): 0.096, ("baseline", 0): 0.099}
RUNS = {"gwp_cnn": {"latency": 71, "resumed": (True, True, True), "minutes": 250.0},
        "baseline": {"latency": 84, "resumed": (False, False, True), "minutes": 109.1}}
SETTINGS = StudySettings(name=STUDY, task_list=MT10, episodes=20, preset="small", batch_size=8, eval_episodes=10,
                         execute_steps=8, steps=12000, observe_goal=True, action_noise=0.3,
                         action_noise_correlation=0.9)
LEARNING_COMMAND = ("python benchmarks/learning.py --tasks mt10 --episodes 20 --steps 12000 --seeds 3 --eval-episodes "
                    "10 --variants gwp_cnn,baseline --observe-goal --action-noise 0.3 --action-noise-correlation 0.9 "
                    f"--name {STUDY}")
TEMPERATURE_COMMAND = f"python benchmarks/temperature.py --study outputs/learning/{STUDY} --temperatures 1,0"


def tasks(row: list[int]) -> dict:
    return {task: {"successes": successes, "episodes": 10} for task, successes in zip(MT10, row, strict=True)}


def store_study(out: Path) -> None:
    """Write the study's run results and its evaluations at temperatures 1 and 0 as the benchmarks store them."""
    for variant, about in RUNS.items():
        for seed, row in enumerate(SUCCESSES[variant, 1]):
            folder = run_folder(out, variant, seed)
            (folder / "temperature").mkdir(parents=True)
            result = {"variant": variant, "seed": seed, "setup": {"task_list": list(MT10)}, "steps": 12000,
                      "resumed": about["resumed"][seed], "train_minutes": about["minutes"],
                      "average_success_rate": sum(row) / 100, "tasks": tasks(row),
                      "latency_ms": {"p50": about["latency"]},
                      "open_loop_heldout": {"action_mse": ACTION_MSE[variant, 1], "video_mse": 0.008,
                                            "video_mse_other_actions": 0.008, "video_mse_static": 0.009}}
            (folder / "result.json").write_text(json.dumps(result))
            for temperature in (1, 0):
                successes = SUCCESSES[variant, temperature][seed]
                evaluation = {"variant": variant, "seed": seed, "temperature": temperature,
                              "average_success_rate": sum(successes) / 100, "tasks": tasks(successes),
                              "heldout_action_mse": ACTION_MSE[variant, temperature]}
                (folder / "temperature" / f"{temperature}.json").write_text(json.dumps(evaluation))


def test_the_sections_regenerated_from_the_stored_results_are_those_in_results_md(tmp_path):
    out, docs = tmp_path / "outputs" / "learning" / STUDY, tmp_path / "docs"
    store_study(out)
    docs.mkdir()
    shutil.copy(RESULTS_MD, docs / "RESULTS.md")
    runs = finished_runs(out)
    assert list(runs) == ["baseline", "gwp_cnn"]  # folder order, as temperature.py lists them
    stored = {variant: [result for _, result in runs[variant]] for variant in ("gwp_cnn", "baseline")}  # --variants
    write_learning(stored, SETTINGS, out, docs, LEARNING_COMMAND)
    evaluations = {variant: {t: [json.loads((run / "temperature" / f"{t:g}.json").read_text()) for run, _ in found]
                             for t in (1.0, 0.0)} for variant, found in runs.items()}
    results = {variant: [result for _, result in found] for variant, found in runs.items()}
    write_section(docs / "RESULTS.md", "temperature", STUDY,
                  temperature_section(STUDY, evaluations, results, [1.0, 0.0], TEMPERATURE_COMMAND))
    assert "every run reproduced the study's number of successes" in read_section(docs / "RESULTS.md",
                                                                                 "temperature", STUDY)
    for kind in ("learning", "temperature"):
        assert read_section(docs / "RESULTS.md", kind, STUDY) == read_section(RESULTS_MD, kind, STUDY), kind
    assert (docs / "RESULTS.md").read_text() == RESULTS_MD.read_text()  # and nothing else in the file moved
    assert (docs / f"learning-{STUDY}.png").stat().st_size > 0
    raw = docs / f"learning-{STUDY}.json"
    assert json.loads(raw.read_text()) == stored
    # another session brings the runs back from the committed raw results alone, and reports the same section
    elsewhere = tmp_path / "elsewhere"
    assert sorted(restore_results(raw, elsewhere)) == sorted((v, r["seed"]) for v, rs in stored.items() for r in rs)
    again = {variant: [result for _, result in found] for variant, found in finished_runs(elsewhere).items()}
    assert again == {variant: stored[variant] for variant in again} and again.keys() == stored.keys()
    write_learning({variant: again[variant] for variant in stored}, SETTINGS, elsewhere, docs, LEARNING_COMMAND)
    assert (docs / "RESULTS.md").read_text() == RESULTS_MD.read_text()


def test_restoring_results_keeps_the_runs_already_stored_and_refuses_what_is_not_a_study(tmp_path):
    out, raw = tmp_path / "out", tmp_path / "learning-x.json"
    here = {"variant": "gwp", "seed": 0, "average_success_rate": 0.5}
    run_folder(out, "gwp", 0).mkdir(parents=True)
    (run_folder(out, "gwp", 0) / "result.json").write_text(json.dumps(here))
    raw.write_text(json.dumps({"gwp": [{**here, "average_success_rate": 0.9}, {**here, "seed": 1}]}))
    assert restore_results(raw, out) == [("gwp", 1)]
    assert json.loads((run_folder(out, "gwp", 0) / "result.json").read_text()) == here  # not replaced
    assert json.loads((run_folder(out, "gwp", 1) / "result.json").read_text()) == {**here, "seed": 1}
    raw.write_text(json.dumps({"baseline": [here]}))
    with pytest.raises(ValueError, match="a result of gwp is listed under baseline"):
        restore_results(raw, out)
    for text in ("[1, 2]", '{"gwp": [{"variant": "gwp"}]}', "{not json"):
        raw.write_text(text)
        with pytest.raises(ValueError, match="is not a study's raw results"):
            restore_results(raw, out)


def test_a_restored_result_keeps_its_training_curve_and_the_mean_curve_skips_seeds_without_one(tmp_path):
    out = tmp_path / "out"
    logged = run_folder(out, "gwp", 0)
    logged.mkdir(parents=True)
    rows = [{"step": 50, "train/loss_action": 1.0}, {"step": 100, "train/loss_action": 0.5},
            {"step": 100, "train/loss_action": 0.25}]  # a resumed log repeats a step: the later row wins
    (logged / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    from_log = {"variant": "gwp", "seed": 0}
    stored = {"variant": "gwp", "seed": 1, "action_loss": [[50, 3.0], [100, 1.75], [150, 1.0]]}
    restored_without = {"variant": "gwp", "seed": 2}  # from before results kept their curve, no run folder
    curves = [training_curve(result, out) for result in (from_log, stored, restored_without)]
    assert curves == [[(50, 1.0), (100, 0.25)], [(50, 3.0), (100, 1.75), (150, 1.0)], []]
    assert mean_training_curve(curves) == ([50, 100], [2.0, 1.0], 2)
    assert mean_training_curve([[], []]) == ([], [], 0)


def test_the_chunk_effect_section_is_the_one_in_results_md():
    # (frames, chunk-decided error, repeat-the-frame error) per task: values within the published rounding
    measured = {"reach-v3": (37, 0.0044, 0.0076), "push-v3": (89, 0.0011, 0.0039),
                "pick-place-v3": (137, 0.0009, 0.0029), "door-open-v3": (29, 0.00144, 0.0122),
                "drawer-open-v3": (53, 0.00566, 0.01512), "drawer-close-v3": (27, 0.0043, 0.0165),
                "button-press-topdown-v3": (23, 0.0023, 0.0250), "peg-insert-side-v3": (59, 0.00077, 0.0058),
                "window-open-v3": (35, 0.0021, 0.0103), "window-close-v3": (27, 0.0012, 0.0092)}
    rows = {task: ([half] * frames, [static] * frames) for task, (frames, half, static) in measured.items()}
    section = chunk_effect_section(STUDY, rows, f"python benchmarks/chunk_effect.py --study outputs/learning/{STUDY} "
                                   "--episodes 3", {"action_noise": 0.3, "action_noise_correlation": 0.9}, [8, 16])
    assert section == read_section(RESULTS_MD, "chunk-effect", STUDY)


def test_the_cross_embodiment_section_sets_each_robots_shared_policy_against_its_own():
    def result(run, seed, rates):  # rates: {robot: (successes of 10, held-out action MSE)}
        return {"run": run, "seed": seed, "train_minutes": 10.0 * len(rates), "robots": {
            robot: {**run_result(seed, wins), "open_loop_heldout": {"action_mse": mse}}
            for robot, (wins, mse) in rates.items()}}

    def run_result(seed, wins):
        return {key: value for key, value in run(seed, wins).items() if key != "seed"}

    results = {"metaworld": [result("metaworld", s, {"metaworld": (w, 0.02)}) for s, w in ((0, 6), (1, 8))],
               "aloha": [result("aloha", s, {"aloha": (0, 0.10)}) for s in (0, 1)],
               "shared": [result("shared", s, {"metaworld": (w, 0.03), "aloha": (0, 0.05)})
                          for s, w in ((0, 5), (1, 5))]}
    section = cross_embodiment_section("x", results, {"metaworld": ("reach-v3",), "aloha": ("transfer-cube",)},
                                       "The setup.", "python benchmarks/cross_embodiment.py")
    rows = [line for line in section.splitlines() if line.startswith("| Meta-World") or line.startswith("| ALOHA")]
    assert rows[0].startswith("| Meta-World | reach-v3 | alone | 70% ± 127 | 60, 80 | 0.020 | 10.0 |")
    assert rows[1].startswith("| Meta-World | reach-v3 | shared | 50% ± 0 | 50, 50 | 0.030 | 20.0 |")
    assert rows[3].startswith("| ALOHA | transfer-cube | shared | 0% ± 0 | 0, 0 | 0.050 | 20.0 |")
    # shared minus alone: pooled 10/20 against 14/20, per seed -10 and -30; ALOHA's error halved
    pooled = points(pooled_difference((10, 20), (14, 20)))
    assert rows[4] == f"| Meta-World | {pooled} | -10, -30 (mean -20 ± 127) | 1.50 |"
    assert rows[5].startswith("| ALOHA | +0 (-16 to +16) | +0, +0") and rows[5].endswith("| 0.50 |")
    assert section.startswith("<!-- cross-embodiment x:begin -->")
    assert section.endswith("<!-- cross-embodiment x:end -->")

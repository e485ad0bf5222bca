"""The markdown sections the studies write into docs/RESULTS.md, each between its two markers.

A section starts with `<!-- <kind> <name>:begin -->` and ends with `<!-- <kind> <name>:end -->` (kind: learning,
temperature, chunk-effect, cross-embodiment); rerunning a study replaces its section and leaves the rest of the file
as it was.
The figures are rounded here and nowhere else: a section regenerated from the stored results is the same text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomically
from ..config import PolicyConfig
from .results import HELDOUT_EPISODES, HELDOUT_SAMPLES
from .statistics import pooled_difference, pooled_successes, seed_interval, wilson_interval
from .variants import EXPERT_PAIRS, PRETRAINED, PRIOR_PAIRS, VIDEO_LOSS_PAIRS, trains_video

SIMULATORS = {"metaworld": "Meta-World", "aloha": "ALOHA"}  # as the section titles name them
# what the columns of every paired table (two variants that differ in one thing) hold
PAIRED_COLUMNS = ("success difference with every episode pooled (Newcombe's 95% interval), and per training seed "
                  "that both ran (their mean ± 95% t-interval over seeds, given two or more).")


def markers(kind: str, name: str) -> tuple[str, str]:
    """The (begin, end) lines of the section `name` of a study of `kind`."""
    return f"<!-- {kind} {name}:begin -->", f"<!-- {kind} {name}:end -->"


def read_section(results_md: Path, kind: str, name: str) -> str | None:
    """The section's text from its begin marker to its end marker, both included; None when the file lacks it."""
    begin, end = markers(kind, name)
    text = results_md.read_text() if results_md.exists() else ""
    if begin not in text:
        return None
    start = text.index(begin)
    return text[start: _end_of(text, start, results_md, end)]


def write_section(results_md: Path, kind: str, name: str, section: str) -> None:
    """Replace the section in results_md with `section` (which starts and ends with its markers), or append it; the
    file is replaced in one rename, so a killed study leaves the old text."""
    begin, end = markers(kind, name)
    if not (section.startswith(begin) and section.endswith(end)):
        raise ValueError(f"a section of {kind} {name} must start with {begin!r} and end with {end!r}")
    text = results_md.read_text() if results_md.exists() else "# Results\n"
    if begin in text:
        start = text.index(begin)
        text = text[:start] + section + text[_end_of(text, start, results_md, end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    results_md.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(results_md, text)


def _end_of(text: str, start: int, results_md: Path, end: str) -> int:
    """Where the section that begins at `start` ends (after its end marker)."""
    stop = text.find(end, start)
    if stop < 0:
        raise ValueError(f"{results_md} has the section's begin marker but not {end!r} after it; mend the file")
    return stop + len(end)


def points(difference: tuple[float, float, float]) -> str:
    """A (difference, low, high) in fractions as points: "+10 (-4 to +24)"."""
    mean, low, high = difference
    return f"{100 * mean:+.0f} ({100 * low:+.0f} to {100 * high:+.0f})"


def success_over_seeds(runs: list[dict]) -> tuple[str, str]:
    """Table cells for runs (one per training seed): "mean% ± 95% half-width" (or "(one seed)"), and the per-seed
    successes in points."""
    mean, half = seed_interval([r["average_success_rate"] for r in runs])
    spread = "(one seed)" if half is None else f"± {100 * half:.0f}"
    return f"{100 * mean:.0f}% {spread}", ", ".join(f"{100 * r['average_success_rate']:.0f}" for r in runs)


def paired_rows(results: dict[str, list[dict]], pairs: tuple[tuple[str, str], ...]) -> list[tuple[str, str, str, str]]:
    """For each pair of variants in `results` that differ in one thing only (e.g. VIDEO_LOSS_PAIRS: the video loss):
    (the first, the second, the success difference with all episodes pooled, the differences per training seed that
    both ran and, given two or more, their mean with a 95% t-interval: the test that counts the spread between
    training seeds)."""
    rows = []
    for first, second in pairs:
        if first in results and second in results:
            ones = {r["seed"]: r["average_success_rate"] for r in results[first]}
            others = {r["seed"]: r["average_success_rate"] for r in results[second]}
            differences = [ones[s] - others[s] for s in sorted(ones.keys() & others.keys())]
            per_seed = ", ".join(f"{round(100 * d):+d}" for d in differences)
            if len(differences) > 1:
                mean, half = seed_interval(differences)
                per_seed += f" (mean {100 * mean:+.0f} ± {100 * half:.0f})"
            pooled = pooled_difference(pooled_successes(results[first]), pooled_successes(results[second]))
            rows.append((first, second, points(pooled), per_seed or "—"))
    return rows


def video_loss_rows(results: dict[str, list[dict]]) -> list[tuple[str, str, str, str]]:
    """`paired_rows` of the variants that differ only in the video loss: (with video, without, pooled, per seed)."""
    return paired_rows(results, VIDEO_LOSS_PAIRS)


@dataclass(frozen=True)
class StudySettings:
    """What a learning study's command asked for, as its section describes it (benchmarks/learning.py's options;
    None: the option was not given)."""

    name: str
    task_list: tuple[str, ...]
    episodes: int  # demonstrations per task
    preset: str
    batch_size: int
    eval_episodes: int  # held-out closed-loop episodes per task
    execute_steps: int  # actions executed per plan (sync), or steps between plans (ensemble)
    steps: int | None = None  # optimiser steps per run
    train_minutes: float | None = None
    pretrain_steps: int | None = None
    extra_episodes: int | None = None  # action-free demonstrations per task (pre-training variants)
    image_size: tuple[int, int] | None = None  # composite (H, W)
    layout: str | None = None
    cnn_widths: tuple[int, ...] | None = None
    goal_marker_radius: float | None = None  # metres
    observe_goal: bool = False
    observe_objects: bool = False  # ALOHA: the objects' xyz in the state
    action_noise: float = 0.0
    action_noise_correlation: float = 0.0
    video_loss_weight: float | None = None
    clean_action_prob: float | None = None
    prior: str | None = None  # the checkpoint folder the prior_* variants post-train from
    env: str = "metaworld"  # the simulator (envs/registry.py)
    execution: str = "sync"  # or "ensemble": ACT's temporal ensembling of overlapping chunks


def budget_words(settings: StudySettings) -> str:
    if settings.steps and settings.train_minutes:
        words = f"{settings.steps} optimiser steps per run, capped at {settings.train_minutes:g} min"
    elif settings.steps:
        words = f"{settings.steps} optimiser steps per run"
    else:
        words = f"{settings.train_minutes:g} min of CPU training per run"
    if settings.pretrain_steps:
        words += f" (the pre-training variants: {settings.pretrain_steps} video-only steps before them)"
    return words


def setup_words(settings: StudySettings) -> str:
    """How the composite image, the CNN observation encoder, the goal's visibility, the demonstrations' action noise
    and the video loss differ from the defaults, if they do."""
    s, words = settings, ""
    if s.image_size or s.layout:
        size = "x".join(map(str, s.image_size or PolicyConfig.preset(s.preset).image_size))
        words += f" with a {size} (H x W) composite in the {s.layout or 't'} layout"
    if s.cnn_widths:
        words += f", a CNN of {len(s.cnn_widths)} stride-2 stages ({'/'.join(map(str, s.cnn_widths))} channels)"
    if s.goal_marker_radius:
        words += f", goal spheres drawn {100 * s.goal_marker_radius:g} cm in radius (Meta-World's: 2 cm)"
    if s.observe_goal:
        words += ", the goal's xyz in the state (Meta-World's multi-task observation; not image-only)"
    if s.observe_objects:
        words += ", the objects' xyz in the state (privileged state; not image-only)"
    if s.action_noise:
        words += (f", demonstrations whose executed and recorded hand motions carry noise of std {s.action_noise:g} "
                  f"(step-to-step correlation {s.action_noise_correlation:g})")
    if s.video_loss_weight is not None:
        words += f", video loss weight {s.video_loss_weight:g} (action loss 1) in the variants that train it"
    if s.clean_action_prob is not None:
        words += (f", {100 * s.clean_action_prob:g}% of the samples of the variants with video given their clean "
                  f"action chunk (video loss only)")
    if s.prior:
        words += f", the prior_* variants post-trained from the video prior `{s.prior}` (its recipe.json says how made)"
    return words


def execution_words(execution: str, execute_steps: int) -> str:
    """How the closed loop executed the chunks (evaluate.closed_loop's `execution` and `execute_steps`)."""
    if execution == "ensemble":
        every = "every step" if execute_steps == 1 else f"every {execute_steps} steps"
        return (f"a plan {every}, each step executing the weighted mean of the plans covering it (ACT's temporal "
                "ensembling)")
    return f"executing {execute_steps} actions per plan"


def learning_section(results: dict[str, list[dict]], settings: StudySettings, command: str) -> str:
    """The section `learning <name>`: the setup in words, then the tables of `summary_tables`, then the plot
    learning-<name>.png. `results`: {variant: [run result, one per training seed]}, in table order."""
    name = settings.name
    begin, end = markers("learning", name)
    withheld = (f" (and {settings.extra_episodes or settings.episodes} more per task with actions withheld, for the "
                "pre-training variants)" if set(PRETRAINED) & set(results) else "")
    kind = "noisy" if settings.action_noise else "expert"  # the held-out demonstrations are recorded the same way
    return "\n".join([
        begin, f"## Learning on {name}: GigaWorld-Policy vs ablations on {SIMULATORS[settings.env]}", "",
        f"Command: `{command}`", "",
        f"Tasks {', '.join(settings.task_list)}; {settings.episodes} {kind} demonstrations per task{withheld}; "
        f"`{settings.preset}` preset{setup_words(settings)}, batch {settings.batch_size}, {budget_words(settings)}; "
        f"{settings.eval_episodes} held-out episodes per task (seeds from 1000), "
        f"{execution_words(settings.execution, settings.execute_steps)}. Held-out action MSE: open-loop error of the "
        f"sampled action chunk (normalised units, EMA weights) on {HELDOUT_SAMPLES} frames of {HELDOUT_EPISODES} "
        f"more {kind} demonstrations per task, on layouts "
        "used neither for training nor for the closed-loop evaluation.", "",
        *summary_tables(results, settings.task_list), "", f"![learning on {name}](learning-{name}.png)", "", end,
    ])


def write_learning(results: dict[str, list[dict]], settings: StudySettings, out: Path, docs: Path,
                   command: str) -> None:
    """Write (or replace) the study's section of docs/RESULTS.md, its plot docs/learning-<name>.png and every result
    raw in docs/learning-<name>.json (commit it with the plot: `results.restore_results` reads it back)."""
    from .plots import plot_learning  # matplotlib only when a study is reported

    plot_learning(results, out, docs / f"learning-{settings.name}.png")
    write_section(docs / "RESULTS.md", "learning", settings.name, learning_section(results, settings, command))
    write_text_atomically(docs / f"learning-{settings.name}.json", json.dumps(results, indent=2))


def summary_tables(results: dict[str, list[dict]], tasks: tuple[str, ...]) -> list[str]:
    """Lines of the learning section's tables: success over seeds with the held-out errors and latency per variant;
    the default against the others, then the pairs that differ in one thing (video loss, prior, action expert),
    pooled; success per task with Wilson intervals."""
    lines = ["| variant | mean success ± 95% interval over training seeds | per seed | seeds | steps | "
             "training min | held-out action MSE | held-out video MSE, true / other chunk | policy latency p50 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for variant, runs in results.items():
        mean_success, per_seed = success_over_seeds(runs)
        lines.append(f"| {variant} | {mean_success} | {per_seed} | {len(runs)} | "
                     f"{np.mean([r['steps'] for r in runs]):.0f} | {training_minutes(runs)} | "
                     f"{np.mean([r['open_loop_heldout']['action_mse'] for r in runs]):.3f} | "
                     f"{video_error(variant, runs)} | "
                     f"{np.median([r['latency_ms']['p50'] for r in runs]):.0f} ms |")
    static = [r["open_loop_heldout"]["video_mse_static"] for variant, runs in results.items() if trains_video(variant)
              for r in runs]
    if static:
        lines += ["", f"Held-out video MSE: future frames decoded given the true action chunk, pixels in [-1, 1]; only "
                  f"for variants trained with the video loss. Repeating the current frame scores "
                  f"{np.mean(static):.3f}. After the slash, the same noise decoded given another sample's chunk: as "
                  f"low as with the true one when the video does not follow the actions."]
    if any(r.get("resumed") for runs in results.values() for r in runs):
        lines += ["", "\\* mean over the runs that were not interrupted: a resumed run's clock counts only the part "
                  "after resuming."]
    lines += default_against_others(results)
    lines += video_loss_effect(results)
    lines += prior_effect(results)
    lines += expert_effect(results)
    lines += ["", "Per task: successes pooled over the training seeds, Wilson 95% interval.", "",
              "| variant | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for variant, runs in results.items():
        cells = []
        for task in tasks:
            successes = sum(r["tasks"][task]["successes"] for r in runs)
            episodes = sum(r["tasks"][task]["episodes"] for r in runs)
            low, high = wilson_interval(successes, episodes)
            cells.append(f"{100 * successes / episodes:.0f}% ({100 * low:.0f}–{100 * high:.0f}%)")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def video_error(variant: str, runs: list[dict]) -> str:
    """Mean held-out future-frame MSE given the true chunk / another sample's, for variants whose video head was
    trained (a dash otherwise)."""
    if not trains_video(variant):
        return "—"
    return " / ".join(f"{np.mean([r['open_loop_heldout'][key] for r in runs]):.3f}"
                      for key in ("video_mse", "video_mse_other_actions"))


def training_minutes(runs: list[dict]) -> str:
    """Mean training wall-clock minutes over the runs that were never interrupted (a resumed run's clock restarted);
    starred when some runs are left out, a dash when all were resumed."""
    whole = [r["train_minutes"] for r in runs if not r.get("resumed")]
    if not whole:
        return "—*"
    return f"{np.mean(whole):.1f}" + ("*" if len(whole) < len(runs) else "")


def default_against_others(results: dict[str, list[dict]], default: str = "gwp") -> list[str]:
    """The default's success minus each other variant's, all episodes pooled."""
    if default not in results or len(results) < 2:
        return []
    counts = pooled_successes(results[default])
    lines = ["", f"{default} against each other variant, all episodes pooled over tasks and training seeds: the "
             "difference in success with a 95% interval (Newcombe's; it treats episodes as independent, so it leaves "
             "out the seed-to-seed spread of the table above).", "",
             f"| variant | successes | {default} minus variant (points) |", "|---|---|---|"]
    for variant, runs in results.items():
        if variant != default:
            other = pooled_successes(runs)
            lines.append(f"| {variant} | {other[0]}/{other[1]} (against {counts[0]}/{counts[1]}) | "
                         f"{points(pooled_difference(counts, other))} |")
    return lines


def paired_table(results: dict[str, list[dict]], pairs: tuple[tuple[str, str], ...], heading: str,
                 columns: tuple[str, str, str]) -> list[str]:
    """The lines of a table of `paired_rows` under `heading`, with `columns` (the first variant, the second, their
    difference) named in words; nothing when no pair ran."""
    rows = paired_rows(results, pairs)
    if not rows:
        return []
    first, second, difference = columns
    return ["", f"{heading}: {PAIRED_COLUMNS}", "",
            f"| {first} | {second} | {difference}, pooled (points) | per seed |", "|---|---|---|---|",
            *(f"| {one} | {other} | {pooled} | {per_seed} |" for one, other, pooled, per_seed in rows)]


def video_loss_effect(results: dict[str, list[dict]]) -> list[str]:
    """The video loss on against off (VIDEO_LOSS_PAIRS), or nothing when no such pair ran."""
    return paired_table(results, VIDEO_LOSS_PAIRS, "The video loss on against off, the network otherwise the same",
                        ("with video", "without", "with minus without"))


def prior_effect(results: dict[str, list[dict]]) -> list[str]:
    """Post-training from the prior against from random weights (PRIOR_PAIRS), or nothing when no such pair ran."""
    return paired_table(results, PRIOR_PAIRS, "Post-training from the prior against from random weights, at the "
                        "same post-training budget", ("from the prior", "from scratch", "prior minus scratch"))


def expert_effect(results: dict[str, list[dict]]) -> list[str]:
    """The action expert against the same network without it (EXPERT_PAIRS), or nothing when no such pair ran."""
    return paired_table(results, EXPERT_PAIRS, "The action expert against the same network without it, at the same "
                        "budget", ("with the expert", "without", "with minus without"))


def temperature_section(name: str, evaluations: dict[str, dict[float, list[dict]]], results: dict[str, list[dict]],
                        temperatures: list[float], command: str) -> str:
    """The section `temperature <name>`. evaluations: {variant: {temperature: [evaluation, one per training seed]}},
    each evaluation with "tasks", "average_success_rate" and "heldout_action_mse"; results: the study's stored
    results {variant: [result, seeds in the same order]}, which the evaluations at temperature 1 must reproduce."""
    tasks = list(next(iter(results.values()))[0]["setup"]["task_list"])
    begin, end = markers("temperature", name)
    lines = [begin, f"## Action-sampling temperature on {name}", "",
             f"Command: `{command}`", "",
             f"The final checkpoints of the study {name} (above), evaluated closed-loop again on its held-out seeds "
             "with the action noise of sampling multiplied by the temperature (1: as trained and as in the study; 0: "
             "deterministic decoding), and scored open-loop on its held-out demonstrations (normalised action MSE "
             "against the demonstrated chunk, mean over training seeds). " + reproduces_the_study(evaluations, results),
             "", "| variant | temperature | mean success ± 95% interval over training seeds | per seed | "
             "minus temperature 1, pooled (points) | held-out action error |", "|---|---|---|---|---|---|"]
    for variant, by_temperature in evaluations.items():
        for temperature in temperatures:
            reports = by_temperature[temperature]
            mean_success, per_seed = success_over_seeds(reports)
            against = (points(pooled_difference(pooled_successes(reports), pooled_successes(by_temperature[1.0])))
                       if 1.0 in by_temperature and temperature != 1.0 else "—")
            action_error = sum(r["heldout_action_mse"] for r in reports) / len(reports)
            lines.append(f"| {variant} | {temperature:g} | {mean_success} | {per_seed} | {against} | "
                         f"{action_error:.3f} |")
    video_rows = [(temperature, row) for temperature in temperatures
                  for row in video_loss_rows({variant: by_temperature[temperature]
                                              for variant, by_temperature in evaluations.items()})]
    if video_rows:
        lines += ["", "The video loss on against off at each temperature, the network otherwise the same: "
                  f"{PAIRED_COLUMNS}", "",
                  "| temperature | with video | without | with minus without, pooled (points) | per seed |",
                  "|---|---|---|---|---|",
                  *(f"| {temperature:g} | {' | '.join(row)} |" for temperature, row in video_rows)]
    lines += ["", "Per task: successes pooled over the training seeds.", "",
              "| variant | temperature | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
    for variant, by_temperature in evaluations.items():
        for temperature in temperatures:
            reports = by_temperature[temperature]
            cells = [f"{100 * task_rate(reports, task):.0f}%" for task in tasks]
            lines.append(f"| {variant} | {temperature:g} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", end])


def reproduces_the_study(evaluations: dict[str, dict[float, list[dict]]], results: dict[str, list[dict]]) -> str:
    """Whether every run at temperature 1 had the study's number of successes on every task and its held-out action
    error."""
    if 1.0 not in next(iter(evaluations.values())):
        return "Temperature 1 was not evaluated again, so the study's own figures are not checked here."
    differing = [f"{variant} seed {result['seed']}" for variant, found in results.items()
                 for result, evaluation in zip(found, evaluations[variant][1.0], strict=True)
                 if successes_per_task(evaluation) != successes_per_task(result)
                 or not math.isclose(evaluation["heldout_action_mse"], result["open_loop_heldout"]["action_mse"],
                                     rel_tol=1e-6)]
    if differing:
        return (f"At temperature 1 these runs did **not** reproduce the study's success or held-out action error: "
                f"{', '.join(differing)} (the study was evaluated with other code).")
    return ("At temperature 1 every run reproduced the study's number of successes on every task and its held-out "
            "action error.")


def successes_per_task(report: dict) -> dict[str, int]:
    return {task: row["successes"] for task, row in report["tasks"].items()}


def task_rate(reports: list[dict], task: str) -> float:
    """Success rate on one task, episodes pooled over the reports (training seeds)."""
    return sum(r["tasks"][task]["successes"] for r in reports) / sum(r["tasks"][task]["episodes"] for r in reports)


def chunk_effect_section(name: str, rows: dict[str, tuple[list[float], list[float]]], command: str,
                         recording: dict, offsets: list[int]) -> str:
    """The section `chunk-effect <name>`. rows: {task: (half the squared difference of two chunks' futures, the
    squared error of repeating the frame), one value per sampled frame, pixels in [-1, 1]}; recording: the
    held-out demonstrations' collection settings; offsets: the future frames' steps after the sampled one."""
    begin, end = markers("chunk-effect", name)
    lines = [begin, f"## How much the action chunk decides the future: {name}", "",
             f"Command: `{command}`", "",
             f"Demonstrations recorded as the study {name}'s (action noise std {recording['action_noise']:g}, "
             f"correlation {recording['action_noise_correlation']:g}); for every sampled frame the chunk was run a "
             f"second time with an independent noise draw from the same state, and its future frames (t + "
             f"{', '.join(map(str, offsets))}) compared with the recorded ones. Chunk-decided error: half their mean "
             "squared difference, the video error that reading the chunk perfectly could remove; repeat-the-frame "
             "error: the future against the current frame (the learning tables' static bar). Pixels in [-1, 1], the "
             "policy's composite, no video compression.", "",
             "| task | frames | chunk-decided error | repeat-the-frame error | chunk-decided / repeat-the-frame |",
             "|---|---|---|---|---|"]
    pooled = ([h for halves, _ in rows.values() for h in halves], [s for _, static in rows.values() for s in static])
    for task, (halves, static) in [*rows.items(), ("**all tasks**", pooled)]:
        lines.append(f"| {task} | {len(halves)} | {np.mean(halves):.4f} | {np.mean(static):.4f} | "
                     f"{np.mean(halves) / np.mean(static):.0%} |")
    return "\n".join([*lines, "", end])


def robot_reports(results: dict[str, list[dict]], robot: str) -> dict[str, list[dict]]:
    """{"alone": [...], "shared": [...]}: the reports on `robot` (each with its training seed) of the policy trained
    on that robot alone (the run named after it) and of the one trained on every robot (the run "shared").
    `results`: {run: [run result with "robots": {robot: closed-loop report + "open_loop_heldout"}, one per seed]}."""
    return {kind: [{"seed": r["seed"], **r["robots"][robot]} for r in results[run]]
            for kind, run in (("alone", robot), ("shared", "shared")) if results.get(run)}


def cross_embodiment_section(name: str, results: dict[str, list[dict]], robots: dict[str, tuple[str, ...]],
                             about: str, command: str) -> str:
    """The section `cross-embodiment <name>`: per robot (`robots`: {robot: its tasks}), the single-robot policy and
    the shared one, then shared minus alone (pooled over episodes, and per training seed). `about`: the setup in
    words."""
    begin, end = markers("cross-embodiment", name)
    lines = [begin, f"## One transformer for several robots: {name}", "", f"Command: `{command}`", "", about, "",
             "| robot | tasks | policy | success ± 95% interval over training seeds | per seed | held-out action MSE "
             "| training min |", "|---|---|---|---|---|---|---|"]
    for robot, tasks in robots.items():
        for kind, reports in robot_reports(results, robot).items():
            mean, per_seed = success_over_seeds(reports)
            error = np.mean([r["open_loop_heldout"]["action_mse"] for r in reports])
            run = robot if kind == "alone" else "shared"
            lines.append(f"| {SIMULATORS.get(robot, robot)} | {', '.join(tasks)} | {kind} | {mean} | {per_seed} | "
                         f"{error:.3f} | {training_minutes(results[run])} |")
    lines += ["", f"Shared against alone on each robot: {PAIRED_COLUMNS}", "",
              "| robot | shared minus alone, pooled (points) | per seed | held-out action MSE, shared / alone |",
              "|---|---|---|---|"]
    for robot in robots:
        reports = robot_reports(results, robot)
        for _, _, pooled, per_seed in paired_rows(reports, (("shared", "alone"),)):
            errors = [np.mean([r["open_loop_heldout"]["action_mse"] for r in reports[k]]) for k in ("shared", "alone")]
            lines.append(f"| {SIMULATORS.get(robot, robot)} | {pooled} | {per_seed} | {errors[0] / errors[1]:.2f} |")
    return "\n".join([*lines, "", end])


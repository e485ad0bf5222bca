"""Action-sampling temperature: does decoding from less noise make a trained policy succeed more often?

Flow matching samples the whole action distribution of the demonstrations, including what the observation cannot
predict (a teleoperator's jitter, or the noise injected into an expert), and the robot then executes that spread
too. A temperature below 1 starts the Euler integration from smaller noise; 0 decodes one chunk deterministically.
For every finished run of a learning study (benchmarks/learning.py: OUT/runs/<variant>-seed<k>/result.json), this
evaluates the run's final checkpoint closed-loop again at each temperature, on the study's held-out seeds and
settings (read from the run's result), and its open-loop action error on the study's held-out demonstrations, and
writes the section temperature-<name> of docs/RESULTS.md: success per variant and temperature (mean over training
seeds, and per task pooled over them), each temperature against 1 with all episodes pooled, the held-out action
error, and at each temperature the variants with the video loss against those without. Temperature 1 is evaluated
again as well: both evaluations are seeded, so they must reproduce the study's own figures, and the section says
whether they did. Each evaluation is kept in OUT/runs/<run>/temperature/<t>.json, so an interrupted benchmark
resumes and runs can be split over processes (`--variants`).

    python benchmarks/temperature.py --study outputs/learning/mt10-goal-state-5demos-noisy --temperatures 1,0.5,0
"""

import argparse
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from learning import (
    HELDOUT_DEMOS,
    SETUP_DEFAULTS,
    VIDEO_LOSS_COLUMNS,
    evaluate_checkpoint,
    final_checkpoint,
    open_loop_heldout,
    pooled_difference,
    pooled_successes,
    success_over_seeds,
    video_loss_rows,
    write_section,
)

from gigaworld_policy.atomic import write_text_atomically
from gigaworld_policy.model.policy import check_temperature

# The settings of the study's closed-loop evaluation, as stored in each run's result.
EVAL_KEYS = ("task_list", "eval_episodes", "execute_steps", "episode_steps", "camera_size", "goal_marker_radius",
             "observe_goal")


def finished_runs(study: Path, variants: list[str] | None) -> dict[str, list[tuple[Path, dict]]]:
    """{variant: [(run folder, stored result), ...]} for the runs of the study that have a result, seeds in order."""
    runs: dict[str, list[tuple[Path, dict]]] = {}
    for result_file in sorted((study / "runs").glob("*/result.json")):
        result = json.loads(result_file.read_text())
        if variants is None or result["variant"] in variants:
            runs.setdefault(result["variant"], []).append((result_file.parent, result))
    if not runs:
        raise SystemExit(f"no finished runs{f' of {variants}' if variants else ''} under {study / 'runs'}")
    return {variant: sorted(found, key=lambda pair: pair[1]["seed"]) for variant, found in runs.items()}


def evaluate_at(run: Path, result: dict, temperature: float) -> dict:
    """The run's closed-loop success and held-out action error at `temperature`: what its cache lacks is evaluated
    now and added to it."""
    cached = run / "temperature" / f"{temperature:g}.json"
    kept = json.loads(cached.read_text()) if cached.exists() else {}
    checkpoint = final_checkpoint(run, result["variant"])
    if "tasks" not in kept:
        setup = result["setup"]
        settings = SimpleNamespace(**{key: setup.get(key, SETUP_DEFAULTS.get(key)) for key in EVAL_KEYS})
        report = evaluate_checkpoint(checkpoint, settings, temperature)
        kept = {"variant": result["variant"], "seed": result["seed"], "temperature": temperature,
                "average_success_rate": report["average_success_rate"],
                "tasks": {task: {"successes": row["successes"], "episodes": row["episodes"]}
                          for task, row in report["tasks"].items()}}
        save(cached, kept)
        print(f"{result['variant']} seed {result['seed']} at temperature {temperature:g}: "
              f"{100 * report['average_success_rate']:.0f}%", flush=True)
    if "heldout_action_mse" not in kept:
        study = run.parent.parent  # OUT of OUT/runs/<run>
        heldout = open_loop_heldout(checkpoint, study / HELDOUT_DEMOS, temperature)
        kept["heldout_action_mse"] = heldout["action_mse"]
        save(cached, kept)
        print(f"{result['variant']} seed {result['seed']} at temperature {temperature:g}: held-out action error "
              f"{heldout['action_mse']:.3f}", flush=True)
    return kept


def save(path: Path, evaluation: dict) -> None:
    path.parent.mkdir(exist_ok=True)
    write_text_atomically(path, json.dumps(evaluation, indent=2))


def successes_per_task(report: dict) -> dict[str, int]:
    return {task: row["successes"] for task, row in report["tasks"].items()}


def reproduces_the_study(evaluations: dict, runs: dict) -> str:
    """Whether every run at temperature 1 had the study's number of successes on every task and its held-out action
    error."""
    if 1.0 not in next(iter(evaluations.values())):
        return "Temperature 1 was not evaluated again, so the study's own figures are not checked here."
    differing = [f"{variant} seed {result['seed']}" for variant, found in runs.items()
                 for (_, result), evaluation in zip(found, evaluations[variant][1.0], strict=True)
                 if successes_per_task(evaluation) != successes_per_task(result)
                 or not math.isclose(evaluation["heldout_action_mse"], result["open_loop_heldout"]["action_mse"],
                                     rel_tol=1e-6)]
    if differing:
        return (f"At temperature 1 these runs did **not** reproduce the study's success or held-out action error: "
                f"{', '.join(differing)} (the study was evaluated with other code).")
    return ("At temperature 1 every run reproduced the study's number of successes on every task and its held-out "
            "action error.")


def section(name: str, evaluations: dict, runs: dict, temperatures: list[float], command: str) -> str:
    tasks = list(next(iter(runs.values()))[0][1]["setup"]["task_list"])
    lines = [f"<!-- temperature {name}:begin -->", f"## Action-sampling temperature on {name}", "",
             f"Command: `{command}`", "",
             f"The final checkpoints of the study {name} (above), evaluated closed-loop again on its held-out seeds "
             "with the action noise of sampling multiplied by the temperature (1: as trained and as in the study; 0: "
             "deterministic decoding), and scored open-loop on its held-out demonstrations (normalised action MSE "
             "against the demonstrated chunk, mean over training seeds). " + reproduces_the_study(evaluations, runs),
             "", "| variant | temperature | mean success ± 95% interval over training seeds | per seed | "
             "minus temperature 1, pooled (points) | held-out action error |", "|---|---|---|---|---|---|"]
    for variant, by_temperature in evaluations.items():
        for temperature in temperatures:
            reports = by_temperature[temperature]
            mean_success, per_seed = success_over_seeds(reports)
            against = (pooled_difference(pooled_successes(reports), pooled_successes(by_temperature[1.0]))
                       if 1.0 in by_temperature and temperature != 1.0 else "—")
            action_error = sum(r["heldout_action_mse"] for r in reports) / len(reports)
            lines.append(f"| {variant} | {temperature:g} | {mean_success} | {per_seed} | {against} | "
                         f"{action_error:.3f} |")
    video_rows = [(temperature, row) for temperature in temperatures
                  for row in video_loss_rows({variant: by_temperature[temperature]
                                              for variant, by_temperature in evaluations.items()})]
    if video_rows:
        lines += ["", "The video loss on against off at each temperature, the network otherwise the same: "
                  f"{VIDEO_LOSS_COLUMNS}", "",
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
    return "\n".join([*lines, "", f"<!-- temperature {name}:end -->"])


def task_rate(reports: list[dict], task: str) -> float:
    """Success rate on one task, episodes pooled over the reports (training seeds)."""
    return sum(r["tasks"][task]["successes"] for r in reports) / sum(r["tasks"][task]["episodes"] for r in reports)


def temperature_list(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",")]
        for value in values:
            check_temperature(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers >= 0, e.g. 1,0.5,0; got {text!r} "
                                         f"({error})") from None
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True, help="a learning study's output folder (learning.py's --out)")
    parser.add_argument("--temperatures", type=temperature_list, default=[1.0, 0.5, 0.0])
    parser.add_argument("--variants", default=None, help="comma-separated (default: every variant with a result)")
    parser.add_argument("--name", default=None, help="names the RESULTS section (default: the study folder's name)")
    parser.add_argument("--docs", default="docs", help="where RESULTS.md is")
    args = parser.parse_args()
    torch.set_num_threads(1)
    study = Path(args.study)
    runs = finished_runs(study, args.variants.split(",") if args.variants else None)
    evaluations = {variant: {t: [evaluate_at(run, result, t) for run, result in found] for t in args.temperatures}
                   for variant, found in runs.items()}
    name = args.name or study.name
    Path(args.docs).mkdir(parents=True, exist_ok=True)
    command = " ".join(sys.argv[1:])
    write_section(Path(args.docs) / "RESULTS.md", f"<!-- temperature {name}:begin -->",
                  f"<!-- temperature {name}:end -->",
                  section(name, evaluations, runs, args.temperatures, f"python benchmarks/temperature.py {command}"))
    print(f"wrote the section temperature-{name} of {Path(args.docs) / 'RESULTS.md'}")


if __name__ == "__main__":
    main()

"""Action-sampling temperature: does decoding from less noise make a trained policy succeed more often?

Flow matching samples the whole action distribution of the demonstrations, including what the observation cannot
predict (a teleoperator's jitter, or the noise injected into an expert), and the robot then executes that spread
too. A temperature below 1 starts the Euler integration from smaller noise; 0 decodes one chunk deterministically.
For every finished run of a learning study (benchmarks/learning.py: OUT/runs/<variant>-seed<k>/result.json), this
evaluates the run's final checkpoint closed-loop again at each temperature, on the study's held-out seeds (the run's
result says which) in the environment its demonstrations recorded, and its open-loop action error on the study's
held-out demonstrations, and writes the section "temperature <name>" of docs/RESULTS.md: success per variant and
temperature (mean over training seeds, and per task pooled over them), each temperature against 1 with all episodes
pooled, the held-out action error, and at each temperature the variants with the video loss against those without.
Temperature 1 is evaluated again as well: both evaluations are seeded, so they must reproduce the study's own
figures, and the section says whether they did. Each evaluation is kept in OUT/runs/<run>/temperature/<t>.json, so
an interrupted benchmark resumes and runs can be split over processes (`--variants`).

    python benchmarks/temperature.py --study outputs/learning/mt10-goal-state-5demos-noisy --temperatures 1,0.5,0
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from learning import evaluate_checkpoint, open_loop_heldout

from gigaworld_policy.atomic import write_text_atomically
from gigaworld_policy.envs.recording import read_recording
from gigaworld_policy.model.policy import check_temperature
from gigaworld_policy.studies.report import temperature_section, write_section
from gigaworld_policy.studies.results import HELDOUT_DEMOS, final_checkpoint, finished_runs


def evaluate_at(run: Path, result: dict, temperature: float) -> dict:
    """The run's closed-loop success and held-out action error at `temperature`: what its cache lacks is evaluated
    now and added to it."""
    cached = run / "temperature" / f"{temperature:g}.json"
    kept = json.loads(cached.read_text()) if cached.exists() else {}
    checkpoint = final_checkpoint(run, result["variant"])
    study = run.parent.parent  # OUT of OUT/runs/<run>
    if "tasks" not in kept:
        setup = result["setup"]
        # in the environment the study's demonstrations were recorded in (its held-out ones, recorded alike)
        settings = read_recording(study / HELDOUT_DEMOS).settings
        report = evaluate_checkpoint(checkpoint, settings, setup["task_list"], setup["eval_episodes"],
                                     setup["execute_steps"], setup["episode_steps"], temperature)
        kept = {"variant": result["variant"], "seed": result["seed"], "temperature": temperature,
                "average_success_rate": report["average_success_rate"],
                "tasks": {task: {"successes": row["successes"], "episodes": row["episodes"]}
                          for task, row in report["tasks"].items()}}
        save(cached, kept)
        print(f"{result['variant']} seed {result['seed']} at temperature {temperature:g}: "
              f"{100 * report['average_success_rate']:.0f}%", flush=True)
    if "heldout_action_mse" not in kept:
        heldout = open_loop_heldout(checkpoint, study / HELDOUT_DEMOS, temperature)
        kept["heldout_action_mse"] = heldout["action_mse"]
        save(cached, kept)
        print(f"{result['variant']} seed {result['seed']} at temperature {temperature:g}: held-out action error "
              f"{heldout['action_mse']:.3f}", flush=True)
    return kept


def save(path: Path, evaluation: dict) -> None:
    path.parent.mkdir(exist_ok=True)
    write_text_atomically(path, json.dumps(evaluation, indent=2))


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
    try:
        runs = finished_runs(study, args.variants.split(",") if args.variants else None)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    evaluations = {variant: {t: [evaluate_at(run, result, t) for run, result in found] for t in args.temperatures}
                   for variant, found in runs.items()}
    name = args.name or study.name
    command = "python benchmarks/temperature.py " + " ".join(sys.argv[1:])
    results = {variant: [result for _, result in found] for variant, found in runs.items()}
    write_section(Path(args.docs) / "RESULTS.md", "temperature", name,
                  temperature_section(name, evaluations, results, args.temperatures, command))
    print(f"wrote the section 'temperature {name}' of {Path(args.docs) / 'RESULTS.md'}")


if __name__ == "__main__":
    main()

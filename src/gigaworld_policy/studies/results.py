"""A learning study's output folder and the run results stored in it (written by benchmarks/learning.py).

    OUT/demos, OUT/extra_demos, OUT/heldout_demos    LeRobot datasets: training, action-free, held-out scoring
    OUT/runs/<variant>-seed<k>/result.json           one run: its setup, closed-loop report and held-out scores
    OUT/runs/<variant>-seed<k>/temperature/<t>.json  its evaluation at sampling temperature t (temperature.py)
    docs/learning-<name>.json                        every result of the last report, raw: committed beside the
                                                     study's plot, and what `restore_results` brings back into
                                                     OUT on another machine or in a later session

A result is a dict: "variant", "seed", "setup" (what it depends on, below), "steps", "resumed", "train_minutes",
"eval_minutes", the closed-loop report of `evaluate.closed_loop` ("tasks", "average_success_rate", "latency_ms",
...), "open_loop_heldout" (`evaluate.open_loop_dataset` on the held-out demonstrations) and "action_loss" (the
training curve, [[step, loss], ...], so that a result restored without its run folder keeps it). Results stored by
older code lack some of this; the functions here say what they lacked and with which value they were made.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text_atomically
from ..checkpoints import CHECKPOINTS
from .variants import PRETRAINED, trains_video

HELDOUT_DEMOS = "heldout_demos"  # the folder of OUT the held-out demonstrations are recorded in
HELDOUT_EPISODES = 5  # held-out demonstrations per task, on layouts disjoint from training and evaluation
HELDOUT_SAMPLES = 256  # frames sampled (evenly) from them for the open-loop error
RESULT = "result.json"
# What a run's result depends on: a cached result made with other values is refused, not silently reused.
SETUP_KEYS = ("env", "task_list", "episodes", "preset", "steps", "train_minutes", "batch_size", "lr", "eval_episodes",
              "execute_steps", "execution", "episode_steps", "camera_size", "image_size", "layout", "cnn_widths",
              "goal_marker_radius", "observe_goal", "observe_objects", "action_noise", "action_noise_correlation")
PRETRAIN_SETUP_KEYS = ("extra_episodes", "pretrain_steps")  # what only the pre-training variants depend on
# of the keys whose default is not None; results stored before the normalisation was recorded used quantiles
# clipped to [-1, 1], which the library no longer does
SETUP_DEFAULTS = {"env": "metaworld", "execution": "sync", "observe_goal": False, "observe_objects": False,
                  "normalization": "quantile, clipped", "action_noise": 0.0, "action_noise_correlation": 0.0}
# policy-config fields added since results were first stored, with the value those results were trained with
POLICY_DEFAULTS = {"clean_action_prob": 0.0}


def run_folder(out: Path, variant: str, seed: int) -> Path:
    """Where one (variant, training seed) of the study in `out` trains and stores its result."""
    return out / "runs" / f"{variant}-seed{seed}"


def comparable_setup(stored: dict, setup: dict) -> dict:
    """A stored result's setup in the keys of `setup`: keys added since it was stored take their default, and a
    result stored before the whole policy config was recorded (only the preset's transformer, as "network") is
    checked on that transformer alone."""
    found = {key: stored.get(key, SETUP_DEFAULTS.get(key)) for key in setup}
    if "policy" not in stored:
        found["policy"] = {**setup["policy"], "transformer": stored.get("network")}
    else:
        found["policy"] = POLICY_DEFAULTS | stored["policy"]
    return found


def setup_differences(stored: dict, setup: dict) -> list[str]:
    """The keys in which a stored result's setup differs from `setup` (policy fields as "policy.<field>"), sorted;
    empty when the stored result was made with this setup. `setup` is as it comes back from JSON (lists)."""
    found = comparable_setup(stored, setup)
    changed = sorted(key for key in setup if key != "policy" and found[key] != setup[key])
    fields = found["policy"].keys() | setup["policy"].keys()
    return changed + sorted(f"policy.{key}" for key in fields
                            if found["policy"].get(key) != setup["policy"].get(key))


def lacks_heldout_scores(result: dict) -> bool:
    """Whether a stored result predates its open-loop held-out scores, or (for a variant with video) the video error
    given another sample's chunk; those are scored again from the run's checkpoint."""
    heldout = result.get("open_loop_heldout")
    return heldout is None or (trains_video(result["variant"]) and "video_mse_other_actions" not in heldout)


def finished_runs(study: Path, variants: list[str] | None = None) -> dict[str, list[tuple[Path, dict]]]:
    """{variant: [(run folder, stored result), ...]} for the runs of the study that have a result (of `variants`,
    or all), variants in the order of their folder names and seeds in order."""
    runs: dict[str, list[tuple[Path, dict]]] = {}
    for result_file in sorted((study / "runs").glob(f"*/{RESULT}")):
        result = json.loads(result_file.read_text())
        if variants is None or result["variant"] in variants:
            runs.setdefault(result["variant"], []).append((result_file.parent, result))
    if not runs:
        raise FileNotFoundError(f"no finished runs{f' of {variants}' if variants else ''} under {study / 'runs'}")
    return {variant: sorted(found, key=lambda pair: pair[1]["seed"]) for variant, found in runs.items()}


def stored_seeds(out: Path, variant: str) -> list[int]:
    """The training seeds, in order, of the runs of `variant` (or of a named run) that have a result under `out`."""
    return sorted(int(folder.name.rsplit("-seed", 1)[1]) for folder in (out / "runs").glob(f"{variant}-seed*")
                  if (folder / RESULT).exists())


def restore_results(raw: Path, out: Path) -> list[tuple[str, int]]:
    """Store under `out` each run of a study's raw results (`raw`: {variant or run: [result, ...]}, as in
    docs/learning-<name>.json) that `out` has no result for, so that a study spread over sessions or machines goes on
    from the runs already done; returns the (variant, seed) pairs restored. A restored result is checked against the
    study's setup like any stored one."""
    try:
        runs = [(listed_as, result.get("variant", listed_as), int(result["seed"]), result)
                for listed_as, results in json.loads(raw.read_text()).items() for result in results]
    except (OSError, ValueError, AttributeError, TypeError, KeyError) as error:
        raise ValueError(f"{raw} is not a study's raw results ({{variant: [result, ...]}}, as docs/learning-<name>"
                         f".json holds them): {error}") from None
    restored = []
    for listed_as, variant, seed, result in runs:
        if listed_as != variant:
            raise ValueError(f"{raw}: a result of {variant} is listed under {listed_as}")
        target = run_folder(out, variant, seed) / RESULT
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(target, json.dumps(result, indent=2))
            restored.append((variant, seed))
    return restored


def final_checkpoint(run: Path, variant: str) -> Path:
    """The checkpoint a finished run was evaluated with (for the pre-training variants, post-training's)."""
    return ((run / "post" if variant in PRETRAINED else run) / CHECKPOINTS / "last").resolve()


def action_loss_curve(run: Path) -> list[tuple[int, float]]:
    """(optimiser step, training action loss) from a run's metrics log. The pre-training variant has no action loss
    in its video-only stage: its curve is the post-training stage, shifted by the pre-training steps."""
    metrics, offset = run / "metrics.jsonl", 0
    if (run / "post").exists():
        metrics = run / "post" / "metrics.jsonl"
        offset = int((run / "pretrain" / CHECKPOINTS / "last").resolve().name)
    if not metrics.exists():
        return []
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    # logs of runs resumed before the trainer trimmed them on resume repeat some steps: the later rows win
    losses = {row["step"]: row["train/loss_action"] for row in rows if "train/loss_action" in row}
    return [(offset + step, loss) for step, loss in sorted(losses.items())]


def training_curve(result: dict, out: Path) -> list[tuple[int, float]]:
    """A run's training action loss: stored with its result, else read from its metrics log under `out`; [] for a
    result stored before the curve was and restored without its run folder."""
    if "action_loss" in result:
        return [(int(step), float(loss)) for step, loss in result["action_loss"]]
    return action_loss_curve(run_folder(out, result["variant"], int(result["seed"])))


def mean_training_curve(curves: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], int]:
    """(steps, mean loss, seeds averaged) over the curves that are not empty, up to the shortest of them."""
    logged = [curve for curve in curves if curve]
    if not logged:
        return [], [], 0
    length = min(len(curve) for curve in logged)
    steps = [step for step, _ in logged[0][:length]]
    return steps, [sum(curve[i][1] for curve in logged) / len(logged) for i in range(length)], len(logged)

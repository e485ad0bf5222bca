"""The learning study's figure: success per variant and training action loss (matplotlib, the `studies` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import file_written_atomically
from ..extras import require
from .results import mean_training_curve, training_curve
from .statistics import seed_interval

SMOOTHING = 8  # logged losses (one per 50 steps) averaged in the loss plot


def plot_learning(results: dict[str, list[dict]], out: Path, path: Path) -> None:
    """Write a PNG to `path`. Left: success per variant (bar = mean over seeds, whisker = 95% t-interval, dots =
    seeds). Right: training action loss against optimiser step (both stages of the pre-training variants), mean over
    the seeds whose curve is known (stored with the result, or in the run folders of the study in `out`).
    `results`: {variant: [run result, one per seed]}."""
    matplotlib = require("matplotlib", "the learning study's plot")
    matplotlib.use("Agg")  # files only: no display on the machines that run studies
    plt = require("matplotlib.pyplot", "the learning study's plot")

    figure, (success, loss) = plt.subplots(1, 2, figsize=(11, 3.2), dpi=100)
    for x, (variant, runs) in enumerate(results.items()):
        rates = [100 * r["average_success_rate"] for r in runs]
        mean, half = seed_interval(rates)
        success.bar(x, mean, yerr=half, capsize=4, color=f"C{x}", alpha=0.6)
        success.scatter([x] * len(rates), rates, color="black", s=12, zorder=3)
        steps, mean_curve, logged = mean_training_curve([training_curve(r, out) for r in runs])
        if logged:
            window = min(SMOOTHING, len(steps))
            smooth = np.convolve(mean_curve, np.ones(window) / window, mode="valid")
            label = variant if logged == len(runs) else f"{variant} ({logged} of {len(runs)} seeds)"
            loss.plot(steps[window - 1:], smooth, color=f"C{x}", label=label)
    success.set_xticks(range(len(results)), list(results), rotation=20, ha="right")
    success.set_ylabel("success on held-out seeds (%)")
    success.set_ylim(0, 100)
    loss.set_xlabel("optimiser step (pretrain: after its video-only stage)")
    loss.set_ylabel(f"training action loss\n(mean of {SMOOTHING} logs)")
    loss.set_yscale("log")
    if loss.get_lines():  # runs without a metrics log have no curve to name
        loss.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_written_atomically(path) as temporary:
        figure.savefig(temporary)
    plt.close(figure)

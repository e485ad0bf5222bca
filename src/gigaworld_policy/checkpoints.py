"""The checkpoint folder of a training run, OUT/checkpoints/:

    <step>/                 a policy folder (see `GigaWorldPolicy.save_pretrained`) + training_state/ (optimizer,
                            scheduler, RNG, data position; no second copy of the weights) + ENVIRONMENTS (how the
                            training data were recorded, for `gwp eval`), written atomically
    last -> <step>          the newest complete checkpoint (resume checks it whole before it loads)
    .<step>.staging, .tmp-* what a save killed midway leaves; the next run in OUT removes it (and prunes to
                            --keep-checkpoints, even if it saves nothing)
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import torch

from .atomic import atomic_directory, clear_interrupted_writes
from .model.policy import GigaWorldPolicy

CHECKPOINTS = "checkpoints"
TRAINING_STATE = "training_state"
# {embodiment name: the Recording (envs/recording.py) of its first training dataset that `gwp collect` recorded}
ENVIRONMENTS = "environments.json"


def latest_checkpoint(output_dir: Path) -> Path | None:
    last = output_dir / CHECKPOINTS / "last"
    return last.resolve() if last.exists() else None


def _step_folders(root: Path) -> list[Path]:
    """The checkpoint folders under `root`, oldest first (by number: a seventh digit comes at step 1,000,000)."""
    return sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def prune_checkpoints(root: Path, keep: int) -> None:
    """Remove all but the `keep` newest checkpoints, never the one `last` names."""
    last = (root / "last").resolve()
    for old in _step_folders(root)[: -max(keep, 1)]:
        if old != last:
            shutil.rmtree(old)


def tidy_output(output_dir: Path, keep: int) -> None:
    """What earlier runs in this folder left when they were killed: half-written checkpoints, staging folders and
    text files go, and checkpoints beyond `keep` too (a resumed run may end before it saves one). Training owns its
    output folder, so nothing else writes these while it starts."""
    root = output_dir / CHECKPOINTS
    clear_interrupted_writes(output_dir)
    clear_interrupted_writes(root)
    if root.is_dir():
        for staging in root.glob(".*.staging"):
            shutil.rmtree(staging)
        prune_checkpoints(root, keep)


def _check_training_state(folder: Path) -> None:
    """Refuse a training_state/ that would not load whole. accelerate names no file when one fails to load, and
    skips an unreadable RNG state with a log line (the run would go on, no longer exact). Every file in it is a
    torch.save zip archive, whose directory of contents is at its end: a file cut short has none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: this checkpoint holds weights only, not a run to resume")
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is truncated or not written by torch.save (it has no zip directory)")


def resume_policy(output_dir: Path, folder: Path) -> GigaWorldPolicy:
    """The policy of the checkpoint `folder` a run resumes from, its training state checked first: a damaged
    checkpoint stops the run before anything is written, with a way to resume from an earlier one."""
    try:
        _check_training_state(folder / TRAINING_STATE)
        return GigaWorldPolicy.from_pretrained(folder, merge_lora=False)
    except (ValueError, FileNotFoundError) as error:
        last = output_dir / CHECKPOINTS / "last"
        earlier = [p.name for p in _step_folders(folder.parent) if int(p.name) < int(folder.name)]
        remedy = (f"point {last} at an earlier checkpoint ({', '.join(earlier)}) to resume from there" if earlier
                  else "start again in a new --output-dir")
        raise ValueError(f"cannot resume from {folder.name}: {error}; {remedy}") from None


def save_checkpoint(accelerator, model, ema_weights: dict[str, torch.Tensor] | None, output_dir: Path, step: int,
                    keep: int, environments: dict[str, dict] | None = None) -> None:
    """All ranks call this (FSDP gathers and saves collectively); the folder appears complete or not at all."""
    root = output_dir / CHECKPOINTS
    staging = root / f".{step:06d}.staging"
    if accelerator.is_main_process:
        (staging / TRAINING_STATE).mkdir(parents=True)  # every rank writes its RNG state in here
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging / TRAINING_STATE))
    accelerator.wait_for_everyone()  # every rank's RNG state is written before the main process moves the folder
    full_state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        with atomic_directory(root / f"{step:06d}") as tmp:
            os.replace(staging / TRAINING_STATE, tmp / TRAINING_STATE)
            accelerator.unwrap_model(model).write_pretrained(tmp, ema_weights, state=full_state)
            if environments:
                (tmp / ENVIRONMENTS).write_text(json.dumps(environments, indent=2))
        shutil.rmtree(staging, ignore_errors=True)
        link = root / ".last.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(f"{step:06d}")
        os.replace(link, root / "last")
        prune_checkpoints(root, keep)
    accelerator.wait_for_everyone()

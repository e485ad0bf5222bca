#!/usr/bin/env bash
# Rebuilds the embodied video prior of the `small` preset on Meta-World: action-free video of the tasks the main job
# and the few-shot study never see, then video-only pre-training (stage 1), then the EMA weights exported into this
# into priors/metaworld-small/ (config.json, model.safetensors, processor.json, recipe.json), loadable by
# `gwp train --init priors/metaworld-small`. About 3 hours on 2 CPU cores (collection ~1 h, pre-training 2 h); nothing
# is downloaded.
#
#   bash priors/build-metaworld-small.sh [WORK_DIR]
#   (EPISODES, MINUTES and PRIOR override the episodes per task, the pre-training minutes and the output folder)
set -euo pipefail
WORK=${1:-outputs/prior-metaworld-small}
PRIOR=${PRIOR:-$(dirname "$0")/metaworld-small}
EPISODES=${EPISODES:-12}
MINUTES=${MINUTES:-120}
export OMP_NUM_THREADS=1 MUJOCO_GL=${MUJOCO_GL:-egl}

# Meta-World's 50 tasks minus the main job's three (reach, button-press-topdown, drawer-open) and minus the five test
# tasks of Meta-World's ML45 split (bin-picking, box-close, door-lock, door-unlock, hand-insert), kept for the
# few-shot study.
TASKS=(assembly-v3 basketball-v3 button-press-topdown-wall-v3 button-press-v3 button-press-wall-v3 coffee-button-v3
       coffee-pull-v3 coffee-push-v3 dial-turn-v3 disassemble-v3 door-close-v3 door-open-v3 drawer-close-v3
       faucet-close-v3 faucet-open-v3 hammer-v3 handle-press-side-v3 handle-press-v3 handle-pull-side-v3
       handle-pull-v3 lever-pull-v3 peg-insert-side-v3 peg-unplug-side-v3 pick-out-of-hole-v3 pick-place-v3
       pick-place-wall-v3 plate-slide-back-side-v3 plate-slide-back-v3 plate-slide-side-v3 plate-slide-v3
       push-back-v3 push-v3 push-wall-v3 reach-wall-v3 shelf-place-v3 soccer-v3 stick-pull-v3 stick-push-v3
       sweep-into-v3 sweep-v3 window-close-v3 window-open-v3)
# The main job's cameras, size and state (gwp demo --observe-goal: the goal's position in the state), so that the
# prior sees what post-training will.
VIEW=(--cameras corner corner2 gripperPOV --image-size 64 64 --observe-goal)

[ -f "$WORK/clean/meta/info.json" ] || gwp collect metaworld --tasks "${TASKS[@]}" "${VIEW[@]}" --episodes "$EPISODES" \
    --seed 0 --out "$WORK/clean"
# the same tasks with drifting noise on the expert's motion: futures that depend on what the arm does. Many of these
# episodes fail (the assembly expert never succeeds under this noise); for video they are kept, 200 steps each.
[ -f "$WORK/noisy/meta/info.json" ] || gwp collect metaworld --tasks "${TASKS[@]}" "${VIEW[@]}" --episodes "$EPISODES" \
    --seed 500000 --action-noise 0.5 --action-noise-correlation 0.9 --keep-failures --max-steps 200 --out "$WORK/noisy"

RESUME=(); [ -e "$WORK/train/checkpoints/last" ] && RESUME=(--resume)
# the main job's network: the small preset seeing the current image through the CNN encoder
gwp train --stage pretrain --preset small --observation-encoder cnn --dataset "$WORK/clean" "$WORK/noisy" --steps 1000000 --max-minutes "$MINUTES" \
    --batch-size 8 --num-workers 1 --save-every 1000 --log-every 25 --output-dir "$WORK/train" "${RESUME[@]}"

python - "$WORK/train/checkpoints/last" "$PRIOR" "$EPISODES" "$MINUTES" "${TASKS[@]}" <<'PY'
import json, sys
from pathlib import Path
from gigaworld_policy import GigaWorldPolicy

checkpoint, prior, episodes, minutes, tasks = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
GigaWorldPolicy.from_pretrained(checkpoint, ema=True).save_pretrained(prior)  # the EMA weights only
recipe = {"stage": "pretrain (video loss only)", "tasks": tasks, "episodes_per_task": {"clean": episodes, "noisy": episodes},
          "action_noise": {"std": 0.5, "correlation": 0.9, "failures_kept": True, "max_steps": 200}, "held_out": {
              "main_job": ["reach-v3", "button-press-topdown-v3", "drawer-open-v3"],
              "few_shot": ["bin-picking-v3", "box-close-v3", "door-lock-v3", "door-unlock-v3", "hand-insert-v3"]},
          "state": "robot state + goal position (--observe-goal)", "observation_encoder": "cnn",
          "steps": int(Path(checkpoint).resolve().name), "minutes": minutes,
          "command": f"EPISODES={episodes} MINUTES={minutes:g} bash priors/build-metaworld-small.sh"}
(prior / "recipe.json").write_text(json.dumps(recipe, indent=2))
PY
echo "prior written to $PRIOR"

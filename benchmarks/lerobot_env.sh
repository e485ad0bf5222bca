#!/usr/bin/env bash
# Builds .venv-lerobot/: LeRobot 0.4.4's own dataset code on Python 3.11, for benchmarks/lerobot_interop.py.
# A venv of its own because LeRobot >= 0.5 needs Python 3.12 and 0.4.4 pins versions we do not want in ours.
#   bash benchmarks/lerobot_env.sh [VENV_DIR]        (about 75 s here; pip warns of lerobot's unmet pins: expected)
set -euo pipefail
VENV="${1:-.venv-lerobot}"
PYTHON="${PYTHON:-python3.11}"
PIP="$VENV/bin/pip"

"$PYTHON" -m venv "$VENV"
"$PIP" install --quiet --upgrade pip
# Torch first and pinned: an unpinned torch resolves to the CUDA build (GBs of wheels).
"$PIP" install --quiet torch==2.13.0
# The standalone reader/writer; it brings datasets, huggingface_hub, av, jsonlines, pandas, ...
"$PIP" install --quiet lerobot-dataset==0.4.4
# lerobot-dataset's dataset_tools still imports `lerobot.datasets.*` (delete_episodes fails without it), and
# `lerobot` is what users run: add it without its robot/training dependencies (its pins, torch < 2.11, would
# replace our torch), plus the two packages its dataset modules import.
"$PIP" install --quiet --no-deps lerobot==0.4.4
"$PIP" install --quiet "accelerate>=1.10,<2" draccus==0.10.0
# Both import torchvision at module level. 0.28 matches torch 2.13, but PyPI ships it built against CUDA torch,
# so its C ops do not load here; benchmarks/lerobot_side.py declares the two ops torchvision's import needs.
"$PIP" install --quiet --no-deps torchvision==0.28.0
# LeRobot decodes videos only through torchcodec here (0.13 is the release for torch 2.13). It loads FFmpeg's shared
# libraries from the system: where they are missing, install them (Debian's ffmpeg package brings them) if this runs
# as root with apt; elsewhere the interop cases still run and say that LeRobot decoded no video.
if ! ldconfig -p | grep 'libavcodec\.so' >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
  else
    echo "FFmpeg's shared libraries are missing: LeRobot will not decode videos" >&2
  fi
fi
"$PIP" install --quiet --no-deps torchcodec==0.13.0
touch "$VENV/.installed"

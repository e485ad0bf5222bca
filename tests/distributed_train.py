"""Run under `torchrun --nproc_per_node 2`: trains, then each rank writes the size of the process group it trained
in and a checksum of its weights."""

import os
import sys
from pathlib import Path

import torch

from gigaworld_policy.train import TrainConfig, train

torch.set_num_threads(1)
dataset, output_dir = sys.argv[1], Path(sys.argv[2])
config = TrainConfig(dataset=(dataset,), preset="tiny", steps=3, output_dir=str(output_dir), batch_size=2,
                     num_workers=0, save_every=3, log_with="none", ema_decay=0)
result = train(config)
with torch.no_grad():
    checksum = sum(float(p.double().abs().sum()) for p in result.policy.parameters())
(output_dir / f"rank{os.environ['RANK']}.txt").write_text(f"{result.num_processes} {checksum:.12e}")

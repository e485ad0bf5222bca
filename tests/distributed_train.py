"""Run under `torchrun --nproc_per_node 2` (with ACCELERATE_USE_FSDP=true to shard):
DATASET OUT [--resume-check | --time-cosine].

Trains the tiny preset for 3 steps into OUT/three; each rank writes to OUT/rank<r>.txt the size of the process group
it trained in, a checksum of its weights (gathered, under FSDP), the share of the weights it held itself and the steps
it took. With --resume-check it then resumes OUT/three to step 6 and trains OUT/six straight to step 6, for the test to
compare. With --time-cosine the 3 steps are at most, on a budget of 2 seconds with the learning rate decaying over it
(each rank reads its own clock)."""

import os
import sys
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor

from gigaworld_policy.train import OptimConfig, TrainConfig, train

torch.set_num_threads(1)
dataset, output_dir = sys.argv[1], Path(sys.argv[2])
resume_check, time_cosine = "--resume-check" in sys.argv[3:], "--time-cosine" in sys.argv[3:]


def run(name: str, steps: int, resume: bool = False):
    budget = dict(max_minutes=2 / 60, optim=OptimConfig(schedule="time-cosine", warmup_steps=1)) if time_cosine else {}
    config = TrainConfig(dataset=(dataset,), preset="tiny", steps=steps, output_dir=str(output_dir / name),
                         batch_size=2, num_workers=0, save_every=3, log_with="none", resume=resume, **budget)
    return train(config)


result = run("three", 3)
with torch.no_grad():
    parameters = list(result.policy.parameters())
    weights = [p.full_tensor() if isinstance(p, DTensor) else p for p in parameters]
    checksum = sum(float(w.double().abs().sum()) for w in weights)
    held = sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in parameters)
share = held / sum(w.numel() for w in weights)
report = f"{result.num_processes} {checksum:.12e} {share:.3f} {int(result.checkpoint.name)}"
(output_dir / f"rank{os.environ['RANK']}.txt").write_text(report)
if resume_check:
    run("three", 6, resume=True)
    run("six", 6)

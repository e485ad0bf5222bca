"""Data-loading throughput against the training step rate, at the `small` preset.

Collects a small Meta-World dataset (3 cameras, composite "t" layout), then measures
* samples/s delivered by a DataLoader over `PolicyDataset` with 1 and 2 worker processes, and
* samples/s consumed by training (compute_loss + backward + AdamW step) on the same batch size,
and prints a Markdown table. The loader should deliver at least 5x what training consumes.

    python benchmarks/data_loading.py [--episodes 4] [--batch-size 8] [--batches 30]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from training_throughput import measure as measure_training

from gigaworld_policy import PolicyConfig
from gigaworld_policy.data import LeRobotDataset, PolicyDataset
from gigaworld_policy.envs.metaworld import MetaWorldSettings
from gigaworld_policy.envs.recording import collect


def loader_rate(dataset, batch_size: int, workers: int, batches: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    iterator = iter(loader)
    next(iterator)  # start-up (worker processes, first file opens) is not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=4, help="demonstrations per task")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--train-steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = PolicyConfig.preset("small")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "metaworld"
        collect(MetaWorldSettings(image_size=(96, 96)), ["reach-v3", "drawer-open-v3"], args.episodes, root,
                progress=False)
        dataset = PolicyDataset(LeRobotDataset(root), config)
        rows = [(f"DataLoader, {w} worker(s)", loader_rate(dataset, args.batch_size, w, args.batches)) for w in (1, 2)]
    train = measure_training("small", args.batch_size, args.train_steps, threads=1)["samples_per_s"]
    print(f"small preset, batch {args.batch_size}, {len(dataset)} frames, 3 cameras 96x96 -> composite "
          f"{config.image_size}, torch threads 1")
    print("| what | samples/s | x training |\n|---|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.1f} | {rate / train:.1f}x |")
    print(f"| training step (loss + backward + AdamW) | {train:.1f} | 1.0x |")


if __name__ == "__main__":
    main()

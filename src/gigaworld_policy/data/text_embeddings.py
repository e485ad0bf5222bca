"""Instruction embeddings stored once, so that training never holds the text encoder (umT5-XXL's encoder alone has
~5.7 B parameters), as `latents.py` does for the VAE.

`precompute_text_embeddings(dataset, encoder, out)` encodes every distinct instruction of a LeRobot dataset once and
writes `out/text_embeds.safetensors` (one (n, D) float32 tensor of the n valid tokens per instruction, keyed by its
task index) and `out/text_embeds.json` (the dataset, the encoder's width and token limit, the instructions in task
order). `TextEmbeddingDataset(samples, out)` then serves the samples with "text_embeds" (L, D), zero-padded to the
policy's text_len L, and "text_mask" (L,) bool in place of "task" — what the encoder would have given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from ..atomic import save_tensors, write_text_atomically
from ..config import read_json
from .lerobot import LeRobotDataset

TENSORS, META = "text_embeds.safetensors", "text_embeds.json"


@torch.no_grad()
def precompute_text_embeddings(dataset: LeRobotDataset, encoder, out: str | os.PathLike, batch_size: int = 16) -> Path:
    """Encode each of the dataset's instructions with `encoder` (an `encoders.text.TextEncoder`) once; the tensors
    are written under a temporary name and renamed when complete, then the description."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(dataset.tasks)
    if not tasks:
        raise ValueError(f"{dataset.root} has no instructions (meta/tasks.parquet is empty)")
    tensors = {}
    for start in range(0, len(tasks), batch_size):
        embeds, mask = encoder(tasks[start : start + batch_size])
        for offset, (states, valid) in enumerate(zip(embeds, mask, strict=True)):
            tensors[str(start + offset)] = states[valid].float().contiguous()
    tmp = out / f".{TENSORS}.tmp"
    save_tensors(tensors, tmp)
    os.replace(tmp, out / TENSORS)
    description = {"root": str(Path(dataset.root).resolve()), "dim": encoder.dim, "max_length": encoder.max_length,
                   "tasks": tasks}
    write_text_atomically(out / META, json.dumps(description, indent=2))
    return out


class TextEmbeddingDataset(Dataset):
    """`samples` (items with "task", e.g. a PolicyDataset or LatentDataset of `dataset`) with the stored embeddings
    of their instruction: "text_embeds" (text_len, D) and "text_mask" (text_len,) in place of "task"."""

    def __init__(self, samples: Dataset, dataset: LeRobotDataset, folder: str | os.PathLike, text_len: int,
                 text_dim: int):
        folder = Path(folder)
        if not (folder / TENSORS).is_file() or not (folder / META).is_file():
            raise FileNotFoundError(f"{folder} has no {TENSORS} and {META}: run gwp precompute-text first")
        recorded = read_json(folder / META)
        wanted = {"tasks": list(dataset.tasks), "dim": text_dim, "max_length": text_len}
        different = {k: (recorded.get(k), v) for k, v in wanted.items() if recorded.get(k) != v}
        if different:
            raise ValueError(f"the instruction embeddings in {folder} were made for other instructions or another "
                             f"text encoder (recorded, needed): {different}")
        stored = load_file(str(folder / TENSORS))
        self.samples = samples
        self.embeds = torch.zeros(len(dataset.tasks), text_len, text_dim)
        self.mask = torch.zeros(len(dataset.tasks), text_len, dtype=torch.bool)
        for index in range(len(dataset.tasks)):
            states = stored[str(index)]
            self.embeds[index, : len(states)] = states
            self.mask[index, : len(states)] = True
        self.task_index = {task: index for index, task in enumerate(dataset.tasks)}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.samples[index])
        task = self.task_index[sample.pop("task")]
        sample["text_embeds"], sample["text_mask"] = self.embeds[task], self.mask[task]
        return sample

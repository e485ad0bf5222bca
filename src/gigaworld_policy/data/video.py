"""MP4 video files through PyAV: an appending encoder (several episodes per file) and a seeking decoder.

Frames are (H, W, 3) uint8 RGB. Timestamps are seconds from the start of the file; frame k of a file encoded
at `fps` has timestamp k / fps.
"""

from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

CODEC = "libx264"
PIX_FMT = "yuv420p"
# A keyframe every 2 frames keeps random access cheap (LeRobot's default); crf 18 is visually lossless.
CODEC_OPTIONS = {"g": "2", "crf": "18", "preset": "veryfast"}
SEEK_GAP = 4  # decode on through up to this many frames rather than seek


class VideoEncoder:
    """Appends frames to one mp4 file; `close()` flushes and finalises it."""

    def __init__(self, path: str | Path, fps: int, height: int, width: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), mode="w")
        self.stream = self.container.add_stream(CODEC, rate=fps, options=CODEC_OPTIONS)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, PIX_FMT
        self.stream.time_base = Fraction(1, fps)
        self.num_frames = 0
        self.encoded_bytes = 0  # of packets muxed so far (the file on disk lags behind its buffers)

    def write(self, frame: np.ndarray) -> None:
        """frame (H, W, 3) uint8 RGB."""
        if frame.shape != (self.stream.height, self.stream.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"video frame must be uint8 ({self.stream.height}, {self.stream.width}, 3), "
                f"got {frame.dtype} {frame.shape}"
            )
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = self.num_frames
        for packet in self.stream.encode(video_frame):
            self.encoded_bytes += packet.size
            self.container.mux(packet)
        self.num_frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def probe_video(path: str | Path) -> tuple[float, int, int]:
    """(frames per second, height, width) of the first video stream of a file, from its header."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file is missing: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            return float(rate), stream.height, stream.width
    except av.error.FFmpegError as error:
        raise ValueError(f"cannot open video {path}: {error}") from error


def concatenate_videos(paths: list[Path], fps: float, output: Path) -> list[int]:
    """Join video files one after another into `output` without re-encoding (packets are copied, so every frame
    decodes bit-identically); file i starts right after the last frame of file i-1. Returns each file's number of
    frames. All files must share codec and frame size."""
    output.parent.mkdir(parents=True, exist_ok=True)
    counts = []
    with av.open(str(output), mode="w") as joined:
        out_stream, start = None, 0.0
        for path in paths:
            try:
                with av.open(str(path)) as source:
                    stream = source.streams.video[0]
                    if out_stream is None:
                        out_stream = joined.add_stream_from_template(stream)
                    first = stream.start_time or 0  # a file's first timestamp need not be 0 (B-frames)
                    shift = round(start / stream.time_base) - first
                    frames = 0
                    for packet in source.demux(stream):
                        if packet.dts is None:  # the demuxer's end-of-stream marker
                            continue
                        packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                        packet.stream = out_stream
                        joined.mux(packet)
                        frames += 1  # one packet per video frame
            except av.error.FFmpegError as error:
                raise ValueError(f"cannot read video {path}: {error}") from error
            counts.append(frames)
            start += frames / fps
    return counts


class VideoDecoder:
    """Decodes frames at timestamps, keeping up to `max_open` containers open (one cache per process).

    Frames become RGB through the decoder's own single-threaded scaler: PyAV's shared one (18.1.1 keeps one per
    thread) runs worker threads that a forked process (a DataLoader worker) inherits without, and hangs in."""

    def __init__(self, max_open: int = 16):
        self.max_open = max_open
        self._open: OrderedDict[Path, av.container.InputContainer] = OrderedDict()
        self._scaler = VideoReformatter()

    def _container(self, path: Path):
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        if not path.is_file():
            raise FileNotFoundError(f"video file is missing: {path}")
        try:
            container = av.open(str(path))
        except av.error.FFmpegError as error:
            raise ValueError(f"cannot open video {path}: {error}") from error
        self._open[path] = container
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].close()
        return container

    def decode(self, path: str | Path, timestamps: list[float] | np.ndarray, fps: float) -> np.ndarray:
        """Frames (N, H, W, 3) uint8 at `timestamps` (seconds; each must name a frame within half a frame).

        Wanted frames far apart (sparse future frames) are reached by seeking, near ones by decoding on."""
        path = Path(path)
        container = self._container(path)
        stream = container.streams.video[0]
        wanted = np.rint(np.asarray(timestamps, dtype=np.float64) * fps).astype(np.int64).tolist()
        found: dict[int, np.ndarray] = {}
        frames = None
        position = None  # index of the last decoded frame
        try:
            for target in sorted(set(wanted)):
                if position is None or target <= position or target - position > SEEK_GAP:
                    container.seek(int(target / fps / stream.time_base), stream=stream, backward=True)
                    frames = container.decode(stream)
                for frame in frames:
                    position = int(round(float(frame.pts * stream.time_base) * fps))
                    if position >= target:
                        break
                if position == target:
                    found[target] = self._scaler.reformat(frame, format="rgb24", threads=1).to_ndarray()
        except av.error.FFmpegError as error:
            raise ValueError(f"corrupt video {path}: {error}") from error
        missing = sorted(set(wanted) - found.keys())
        if missing:
            raise ValueError(f"video {path} has no frame at timestamp(s) {[m / fps for m in missing[:5]]}")
        return np.stack([found[i] for i in wanted])

    def close(self) -> None:
        for container in self._open.values():
            container.close()
        self._open.clear()

"""Client side of the policy server: `PolicyClient.infer(obs)` and action-chunk brokers for control loops
(`ActionChunkBroker` stops for each chunk; `RealTimeChunkBroker` asks for the next one while the current one runs)."""

from __future__ import annotations

import contextlib
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..extras import require
from . import msgpack_numpy


class PolicyClient:
    """Synchronous websocket client. `metadata` holds what the server announced on connect."""

    def __init__(self, host: str = "localhost", port: int = 8000, timeout: float = 60.0):
        connect = require("websockets.sync.client", "the policy client").connect
        self._stack = contextlib.ExitStack()
        self._connection = self._stack.enter_context(
            connect(f"ws://{host}:{port}", max_size=None, compression=None, open_timeout=timeout)
        )
        self.timeout = timeout
        self.metadata: dict = msgpack_numpy.unpackb(self._connection.recv(timeout=timeout))

    def infer(self, observation: dict[str, Any]) -> dict[str, Any]:
        """observation: e.g. {"observation.images.corner": (H, W, 3) uint8, "observation.state": (S,), "task": str}.
        Returns {"actions": (H, A), "server_timing": {...}}; raises RuntimeError with the server's message."""
        message = msgpack_numpy.packb(observation)
        limit = self.metadata.get("max_message_bytes")
        if limit is not None and len(message) > limit:  # the server would close the connection without a reply
            raise ValueError(f"the observation packs to {len(message):,} bytes; the server takes at most {limit:,} "
                             f"(send smaller images, or uint8 rather than float)")
        self._connection.send(message)
        reply = msgpack_numpy.unpackb(self._connection.recv(timeout=self.timeout))
        if "error" in reply:
            raise RuntimeError(f"policy server: {reply['error']}")
        return reply

    def send_raw(self, data: bytes | str) -> dict:
        """Send an arbitrary frame and return the decoded reply (for testing a server's error handling)."""
        self._connection.send(data)
        return msgpack_numpy.unpackb(self._connection.recv(timeout=self.timeout))

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ActionChunkBroker:
    """One action per `act(obs)` call, asking the server for a new chunk every `execute_steps` calls."""

    def __init__(self, client: PolicyClient, execute_steps: int):
        if execute_steps < 1:
            raise ValueError(f"execute_steps must be at least 1, got {execute_steps}")
        self.client, self.execute_steps = client, execute_steps
        self._chunk: np.ndarray | None = None
        self._index = 0

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        if self._chunk is None or self._index >= min(self.execute_steps, len(self._chunk)):
            self._chunk = np.asarray(self.client.infer(observation)["actions"])
            self._index = 0
        action = self._chunk[self._index]
        self._index += 1
        return action

    def reset(self) -> None:
        self._chunk, self._index = None, 0


class RealTimeChunkBroker:
    """One action per `act(obs)` call at `control_hz`, without stopping while chunks are computed: the next chunk is
    asked for while the current one still runs, early enough (from the measured latency, in control steps) that it
    arrives when `execute_steps` of the current chunk have run, and the switch-over has no gap.

    mode "rtc" (real-time chunking): the request carries the actions that run while it is computed
    ("action_prefix", robot units); the server's policy keeps them as the new chunk's first steps and continues
    them, so nothing jumps where the chunks meet. mode "async": the same timing without the prefix; the new chunk
    starts where the robot is by then, and may jump. The first chunk of an episode is waited for.
    """

    def __init__(self, client: PolicyClient, execute_steps: int, control_hz: float, mode: str = "rtc"):
        if mode not in ("rtc", "async"):
            raise ValueError(f"mode must be 'rtc' or 'async', got {mode!r}")
        if execute_steps < 1 or not control_hz > 0:
            raise ValueError(f"execute_steps must be >= 1 and control_hz > 0, got {execute_steps}, {control_hz}")
        prefix = client.metadata.get("action_prefix") or {}
        if mode == "rtc" and not prefix.get("supported"):
            raise ValueError("the server's policy does not take an action prefix (it was trained without "
                             "action_prefix_prob): use mode='async'")
        self.client, self.execute_steps, self.control_hz, self.mode = client, execute_steps, control_hz, mode
        self.max_prefix = min(execute_steps, int(prefix.get("max_steps", execute_steps)))
        self.delay_steps = 0  # control steps a request takes, from the latest measured latency
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.reset()

    def reset(self) -> None:
        """Start a new episode (a request still under way is waited for and dropped)."""
        if getattr(self, "_pending", None) is not None:
            self._pending.result()
        self._chunk: np.ndarray | None = None
        self._index = 0  # of the next action in the current chunk
        self._end = self.execute_steps  # index at which the next chunk takes over
        self._pending: Future | None = None
        self._pending_offset = 0

    def _infer(self, request: dict[str, Any]) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        actions = np.asarray(self.client.infer(request)["actions"])
        return actions, time.perf_counter() - start

    def _measured(self, latency: float) -> None:
        self.delay_steps = min(self.max_prefix, math.ceil(latency * self.control_hz))

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        if self._chunk is None:
            self._chunk, latency = self._infer(observation)
            self._end = min(self.execute_steps, len(self._chunk))
            self._measured(latency)
        if self._pending is None and self._index >= self._end - self.delay_steps:
            running = self._chunk[self._index : self._end]  # what runs until the reply is due
            request = {**observation, "action_prefix": running} if self.mode == "rtc" and len(running) else observation
            self._pending, self._pending_offset = self._pool.submit(self._infer, request), len(running)
        if self._index >= self._end:
            chunk, latency = self._pending.result()  # waits only when the reply is later than measured
            self._measured(latency)
            # the chunk's step 0 is the time of its observation: the steps run since then are behind us
            self._chunk, self._index, self._pending = chunk, self._pending_offset, None
            self._end = min(self._index + self.execute_steps, len(chunk))
        action = self._chunk[self._index]
        self._index += 1
        return action

    def close(self) -> None:
        self._pool.shutdown(wait=True)

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
        self._gone: str | None = None  # why the connection can no longer be used, once it cannot
        self.metadata: dict = self._receive()

    def _receive(self) -> dict:
        """The server's next message: a map. openpi's servers send an error as a text frame: RuntimeError with it.
        A reply that misses the timeout closes the connection, since it would arrive as the next request's reply."""
        try:
            frame = self._connection.recv(timeout=self.timeout)
        except TimeoutError:
            self._gone = (f"the policy server did not reply within {self.timeout:g} s, so the connection was closed "
                          "(its late reply would have answered the next observation): make a new PolicyClient")
            self.close()
            raise TimeoutError(self._gone) from None
        if isinstance(frame, str):
            raise RuntimeError(f"policy server: {frame}")
        message = msgpack_numpy.unpackb(frame)
        if not isinstance(message, dict):
            raise RuntimeError(f"policy server: expected a msgpack map, got a {type(message).__name__}")
        return message

    def infer(self, observation: dict[str, Any]) -> dict[str, Any]:
        """observation: e.g. {"observation.images.corner": (H, W, 3) uint8, "observation.state": (S,), "task": str}.
        Returns {"actions": (H, A), "server_timing": {...}}; raises RuntimeError with the server's message."""
        if self._gone:
            raise RuntimeError(self._gone)
        message = msgpack_numpy.packb(observation)
        limit = self.metadata.get("max_message_bytes")
        if limit is not None and len(message) > limit:  # the server would close the connection without a reply
            raise ValueError(f"the observation packs to {len(message):,} bytes; the server takes at most {limit:,} "
                             f"(send smaller images, or uint8 rather than float)")
        self._connection.send(message)
        reply = self._receive()
        if "error" in reply:
            raise RuntimeError(f"policy server: {reply['error']}")
        actions = reply.get("actions")
        if not isinstance(actions, np.ndarray) or actions.ndim != 2:
            raise RuntimeError(f"policy server: expected a reply with 'actions' (H, A), got keys {sorted(reply)}"
                               + ("" if actions is None else f" and actions of shape {np.shape(actions)}"))
        return reply

    def send_raw(self, data: bytes | str) -> dict:
        """Send an arbitrary frame and return the decoded reply (for testing a server's error handling)."""
        self._connection.send(data)
        return self._receive()

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
        # how far ahead a request may leave: in rtc mode no more steps than the policy takes as a prefix
        self.max_delay = min(execute_steps, int(prefix.get("max_steps", execute_steps))) if mode == "rtc" else (
            execute_steps)
        self.delay_steps = 0  # control steps a request takes, from the latest measured latency
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.reset()

    def reset(self) -> None:
        """Start a new episode (a request still under way is waited for and dropped, and so is its error)."""
        if getattr(self, "_pending", None) is not None:
            self._pending.exception()
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
        self.delay_steps = min(self.max_delay, math.ceil(latency * self.control_hz))

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
            pending, self._pending = self._pending, None  # a failed request is not asked again for its result
            chunk, latency = pending.result()  # waits only when the reply is later than measured
            self._measured(latency)
            # the chunk's step 0 is the time of its observation: the steps run since then are behind us
            self._chunk, self._index = chunk, self._pending_offset
            self._end = min(self._index + self.execute_steps, len(chunk))
        action = self._chunk[self._index]
        self._index += 1
        return action

    def close(self) -> None:
        self._pool.shutdown(wait=True)

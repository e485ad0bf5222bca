"""Client side of the policy server: `PolicyClient.infer(obs)` and an action-chunk broker for control loops."""

from __future__ import annotations

import contextlib
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

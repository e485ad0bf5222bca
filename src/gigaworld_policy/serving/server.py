"""A policy server speaking openpi's websocket protocol.

On connect the server sends one metadata message; then every request (a msgpack map of observation keys, see
`observation.py`) gets one reply: {"actions": (H, A) float32 in robot units, "server_timing": {"infer_ms",
"total_ms"}} — plus "video": (F, H, W, 3) uint8 predicted future frames when the request has "return_video": true.
A request may carry "action_prefix": (d, A) actions in robot units that the robot executes while it is served (real-
time chunking, for a policy trained with action_prefix_prob; the metadata says whether and up to which d): the reply's
chunk starts with them and continues them.
A request that cannot be served gets {"error": "<what was wrong>"} and the connection stays open; a message larger
than `max_message_bytes` (announced in the metadata) closes the connection with code 1009 (message too big).
`GET /healthz` answers 200 "ok". Several clients may connect; inference runs one request at a time, in the order
they arrive, and a request is checked before it waits for its turn, so a malformed one never holds anyone up.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import threading
import time
from collections.abc import Iterator

import numpy as np

from ..data.lerobot import IMAGE_PREFIX
from ..extras import require
from ..inference import ObservationOutOfRange, Predictor
from . import msgpack_numpy
from .observation import (
    MAX_INSTRUCTION_CHARS,
    MAX_MESSAGE_BYTES,
    action_prefix,
    check_key_map,
    parse_observation,
    wants_video,
)

ConnectionClosed = require("websockets.exceptions", "the policy server").ConnectionClosed

log = logging.getLogger(__name__)


class PolicyServer:
    def __init__(self, predictor: Predictor, host: str = "0.0.0.0", port: int = 8000,
                 key_map: dict[str, str] | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 max_instruction_chars: int = MAX_INSTRUCTION_CHARS):
        for name, value in (("max_message_bytes", max_message_bytes), ("max_instruction_chars", max_instruction_chars)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.predictor, self.host, self.port, self.key_map = predictor, host, port, key_map or {}
        self.max_message_bytes, self.max_instruction_chars = max_message_bytes, max_instruction_chars
        check_key_map(self.key_map, predictor.cameras)
        self._lock = asyncio.Lock()  # fair: waiters are served in the order they came

    def metadata(self) -> dict:
        config = self.predictor.policy.config
        return {
            "policy": "gigaworld-policy",
            "embodiment": self.predictor.embodiment,
            "cameras": self.predictor.cameras,
            "image_keys": [IMAGE_PREFIX + c for c in self.predictor.cameras],
            "state_dim": self.predictor.state_dim,
            "action_dim": self.predictor.action_dim,
            "action_horizon": config.chunk_size,
            "future_frames": config.num_future_frames,
            "max_message_bytes": self.max_message_bytes,
            "max_instruction_chars": self.max_instruction_chars,
            # real-time chunking: a request may carry the actions executed while it is served
            "action_prefix": {"supported": self.predictor.max_action_prefix > 0,
                              "max_steps": self.predictor.max_action_prefix},
        }

    def _prepare(self, message: bytes | str) -> tuple[dict, bool, np.ndarray | None]:
        """A message -> (the policy batch, whether to return video, the action prefix); all the request's checks
        happen here."""
        if not isinstance(message, bytes):
            raise ValueError("requests must be binary msgpack frames, got a text frame")
        try:
            request = msgpack_numpy.unpackb(message)
        except ValueError as error:
            raise ValueError(f"cannot decode the request: {error}") from None
        observation = parse_observation(request, self.predictor.cameras, self.key_map, self.max_instruction_chars)
        prefix = action_prefix(request, self.predictor.action_dim, self.predictor.max_action_prefix)
        return self.predictor.batch(observation), wants_video(request), prefix

    def _infer(self, batch: dict, with_video: bool, prefix: np.ndarray | None) -> dict:
        start = time.perf_counter()
        result = self.predictor.predict_batch(batch, with_video=with_video, action_prefix=prefix)
        result["server_timing"] = {"infer_ms": (time.perf_counter() - start) * 1e3}
        return result

    async def _reply(self, message: bytes | str) -> dict:
        start = time.perf_counter()
        try:
            try:
                # Decoding, checking and resizing the images run on a worker thread before the request waits its
                # turn: a large or malformed message must neither pause the other connections nor hold the policy.
                batch, with_video, prefix = await asyncio.to_thread(self._prepare, message)
            except ValueError as error:  # the request's fault: the message says what was wrong
                log.info("refused a request: %s", error)
                return {"error": str(error)}
            async with self._lock:
                reply = await asyncio.to_thread(self._infer, batch, with_video, prefix)
        except ObservationOutOfRange as error:  # the observation's fault, found only by running the policy
            log.warning("refused a request: %s", error)
            return {"error": str(error)}
        except Exception:  # a bug of ours (past the checks, a ValueError too): keep serving, keep the traceback here
            log.exception("request failed")
            return {"error": "internal error of the policy server (see its log): the request was not served"}
        reply["server_timing"]["total_ms"] = (time.perf_counter() - start) * 1e3
        return reply

    async def _handle(self, connection) -> None:
        try:
            await connection.send(msgpack_numpy.packb(self.metadata()))
            async for message in connection:
                await connection.send(msgpack_numpy.packb(await self._reply(message)))
        except ConnectionClosed as closed:  # e.g. a message over max_message_bytes, or a client gone mid-reply
            log.info("connection from %s closed: %s", connection.remote_address, closed)

    @staticmethod
    def _health(connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        return None

    async def serve(self, ready: asyncio.Event | threading.Event | None = None,
                    stop: asyncio.Event | None = None) -> None:
        serve = require("websockets.asyncio.server", "the policy server").serve
        async with serve(self._handle, self.host, self.port, process_request=self._health,
                         max_size=self.max_message_bytes, compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]  # the real port when 0 was asked for
            log.info("serving on %s:%d", self.host, self.port)
            if ready is not None:
                ready.set()
            await (stop.wait() if stop is not None else asyncio.Future())

    def run(self) -> None:
        asyncio.run(self.serve())


@contextlib.contextmanager
def serve_in_background(server: PolicyServer, timeout: float = 60.0) -> Iterator[PolicyServer]:
    """Run `server` on a thread of its own for the duration of the block (tests, benchmarks, notebooks); inside
    it `server.port` is the port really bound."""
    ready, state = threading.Event(), {}

    async def main() -> None:
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        await server.serve(ready, state["stop"])

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as error:  # e.g. the port is taken: the caller raises it
            state["error"] = error
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="policy-server", daemon=True)
    thread.start()
    if not ready.wait(timeout) or "error" in state:
        raise RuntimeError(f"the policy server did not start (waited up to {timeout} s)") from state.get("error")
    try:
        yield server
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(timeout)

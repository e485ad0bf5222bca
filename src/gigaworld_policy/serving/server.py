"""A policy server speaking openpi's websocket protocol.

On connect the server sends one metadata message; then every request (a msgpack map of observation keys, see
`observation.py`) gets one reply: {"actions": (H, A) float32 in robot units, "server_timing": {"infer_ms",
"total_ms"}} — plus "video": (F, H, W, 3) uint8 predicted future frames when the request has "return_video": true.
A request that cannot be served gets {"error": "<what was wrong>"} and the connection stays open.
`GET /healthz` answers 200 "ok". Several clients may connect; inference runs one request at a time.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time

from ..inference import Predictor
from . import msgpack_numpy
from .observation import check_key_map, parse_observation

log = logging.getLogger(__name__)


class PolicyServer:
    def __init__(self, predictor: Predictor, host: str = "0.0.0.0", port: int = 8000,
                 key_map: dict[str, str] | None = None):
        self.predictor, self.host, self.port, self.key_map = predictor, host, port, key_map or {}
        check_key_map(self.key_map, predictor.cameras)
        self._lock = asyncio.Lock()

    def metadata(self) -> dict:
        config = self.predictor.policy.config
        return {
            "policy": "gigaworld-policy",
            "embodiment": self.predictor.embodiment,
            "cameras": self.predictor.cameras,
            "image_keys": [f"observation.images.{c}" for c in self.predictor.cameras],
            "state_dim": self.predictor.state_dim,
            "action_dim": len(self.predictor.action_normalizer.offset),
            "action_horizon": config.chunk_size,
            "future_frames": config.num_future_frames,
        }

    def _infer(self, request: dict) -> dict:
        observation = parse_observation(request, self.predictor.cameras, self.key_map)
        start = time.perf_counter()
        result = self.predictor.predict(observation, with_video=bool(request.get("return_video", False)))
        result["server_timing"] = {"infer_ms": (time.perf_counter() - start) * 1e3}
        return result

    async def _handle(self, connection) -> None:
        await connection.send(msgpack_numpy.packb(self.metadata()))
        async for message in connection:
            start = time.perf_counter()
            try:
                if not isinstance(message, bytes):
                    raise ValueError("requests must be binary msgpack frames, got a text frame")
                try:
                    request = msgpack_numpy.unpackb(message)
                except Exception as error:
                    raise ValueError(f"request is not valid msgpack: {error}") from error
                async with self._lock:  # one inference at a time; others wait their turn
                    reply = await asyncio.to_thread(self._infer, request)
                reply["server_timing"]["total_ms"] = (time.perf_counter() - start) * 1e3
            except ValueError as error:
                reply = {"error": str(error)}
            except Exception as error:  # never let one bad request take the server down
                log.exception("request failed")
                reply = {"error": f"{type(error).__name__}: {error}"}
            await connection.send(msgpack_numpy.packb(reply))

    @staticmethod
    def _health(connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        return None

    async def serve(self, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
        from websockets.asyncio.server import serve

        async with serve(self._handle, self.host, self.port, process_request=self._health, max_size=None,
                         compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]  # the real port when 0 was asked for
            log.info("serving on %s:%d", self.host, self.port)
            if ready is not None:
                ready.set()
            await (stop.wait() if stop is not None else asyncio.Future())

    def run(self) -> None:
        asyncio.run(self.serve())

"""Policy-server latency over loopback (msgpack + websocket round trip) against in-process inference.

A randomly initialised `small` policy (3 cameras 64x64, 4-d state and action, identity normalisation) is served
on 127.0.0.1; the same observation is sent N times. Latency does not depend on the weights' values.

    python benchmarks/server_latency.py [--requests 30] [--threads 1]
"""

import argparse
import time

import numpy as np
import torch

from gigaworld_policy import GigaWorldPolicy, PolicyConfig
from gigaworld_policy.data import Normalizer, RobotProcessor
from gigaworld_policy.envs.base import Observation
from gigaworld_policy.inference import Predictor
from gigaworld_policy.serving.client import PolicyClient
from gigaworld_policy.serving.server import PolicyServer, serve_in_background

CAMERAS = ("corner", "corner2", "gripperPOV")


def make_predictor(preset: str = "small") -> Predictor:
    torch.manual_seed(0)
    policy = GigaWorldPolicy(PolicyConfig.preset(preset))
    identity = Normalizer(torch.zeros(4), torch.ones(4), clip=True)
    policy.processors = {"sawyer": RobotProcessor(CAMERAS, ((64, 64),) * 3, "t", "letterbox", identity, identity)}
    return Predictor(policy)


def percentiles(values: list[float]) -> str:
    return f"p50 {np.percentile(values, 50):.1f} ms, p95 {np.percentile(values, 95):.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = make_predictor()
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for c in CAMERAS}
    state = np.zeros(4, np.float32)

    observation = Observation(images, state, "open the drawer")
    predictor.predict(observation)
    local = []
    for _ in range(args.requests):
        start = time.perf_counter()
        predictor.predict(observation)
        local.append((time.perf_counter() - start) * 1e3)

    request = {**{f"observation.images.{c}": v for c, v in images.items()}, "observation.state": state,
               "task": "open the drawer"}
    remote, inference = [], []
    with (serve_in_background(PolicyServer(predictor, "127.0.0.1", 0)) as server,
          PolicyClient("127.0.0.1", server.port) as client):
        client.infer(request)
        for _ in range(args.requests):
            start = time.perf_counter()
            reply = client.infer(request)
            remote.append((time.perf_counter() - start) * 1e3)
            inference.append(reply["server_timing"]["infer_ms"])
    print(f"small preset, {args.requests} requests, torch threads {args.threads}, loopback")
    print("| path | latency |\n|---|---|")
    print(f"| in-process `Predictor.predict` | {percentiles(local)} |")
    print(f"| server: inference only | {percentiles(inference)} |")
    print(f"| client round trip (msgpack + websocket) | {percentiles(remote)} |")
    print(f"| overhead of serving (median) | {np.median(remote) - np.median(local):.1f} ms |")


if __name__ == "__main__":
    main()

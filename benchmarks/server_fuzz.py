"""Fuzz the policy server with malformed messages, then time a client while a hostile one sends large messages.

A randomly initialised `tiny` policy (see server_latency.py) is served on 127.0.0.1 with the default limits.
Phase 1 sends --messages malformed or mutated messages from one seeded generator (stopping early after
--max-seconds) and sorts the replies: actions (the mutation was harmless), an error sentence, an internal error, an
error that names a raw exception type or holds a traceback, a disconnect, no reply. Phase 2 times a well-behaved
client, first alone, then while a second process sends one kind of large message after another for
--attack-seconds each. Both phases are bounded; the script stops by itself.

    python benchmarks/server_fuzz.py [--messages 5000] [--seed 0] [--threads 1]
"""

import argparse
import logging
import multiprocessing
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import torch
from server_latency import CAMERAS, make_predictor
from websockets.exceptions import ConnectionClosed

from gigaworld_policy.serving import msgpack_numpy
from gigaworld_policy.serving.client import PolicyClient
from gigaworld_policy.serving.observation import MAX_INSTRUCTION_CHARS, MAX_MESSAGE_BYTES
from gigaworld_policy.serving.server import PolicyServer, serve_in_background

HOST = "127.0.0.1"  # loopback only: nothing here is meant to reach another machine
LEAK = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception|Warning)\b")  # e.g. "ZeroDivisionError: ..."
KEYS = [*(f"observation.images.{c}" for c in CAMERAS), "observation.state", "task", "prompt", "state", "images",
        "observation/state", "return_video"]
SCALARS = [None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 0.5, -0.0, float("nan"), float("inf"), 1e39,
           -1e308, "", "yes", "false", "ünïcødé", b"", b"\xff\xfe", [], {}, [[]], {"x": 1.0}, [0, 0, 0, None],
           [1, [2, 3]], {1: 2}, {None: None}, [1e39, 0, 0, 0], [0.1, -0.2, 0.3, 0.0, 0.5]]
DTYPES = ["|u1", "|b1", "<i8", "<u2", "<f2", "<f4", ">f4", "<f8", "<c8", "<c16"]
IMAGE_SHAPES = [(64, 64, 3), (3, 64, 64), (0, 64, 3), (64, 0, 3), (3, 0, 64), (1, 4096, 3), (4096, 1, 3),
                (64, 64, 4), (64, 64), (64, 64, 3, 1), (3,), (), (1, 1, 3), (3, 3, 3)]


def pick(rng: np.random.Generator, options: list) -> Any:
    return options[rng.integers(len(options))]


def valid_request(rng: np.random.Generator) -> dict:
    images = {f"observation.images.{c}": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for c in CAMERAS}
    return {**images, "observation.state": np.zeros(4, np.float32), "task": "open the drawer"}


# ---- hostile values: (kind, generator) --------------------------------------------------------------------------

def _array(rng: np.random.Generator) -> np.ndarray:
    shape = pick(rng, IMAGE_SHAPES)
    dtype = np.dtype(pick(rng, DTYPES))
    scale = pick(rng, [1.0, 255.0, 1e39])
    values = np.asarray(rng.random(shape) * scale)  # an array even for shape ()
    if rng.random() < 0.2 and values.size:
        values.flat[rng.integers(values.size)] = np.nan
    with np.errstate(all="ignore"):  # casting NaN or 1e39 to ints is the point
        return values.astype(dtype)


def _string(rng: np.random.Generator) -> str:
    length = int(rng.integers(0, MAX_INSTRUCTION_CHARS + 50))
    return "".join(map(chr, rng.integers(32, 0x3000, length)))


def _numbers(rng: np.random.Generator) -> list:
    pool = [0, 1, -1, 0.25, 1e39, -1e39, float("nan"), 2**63 - 1, True, None]
    return [pool[i] for i in rng.integers(len(pool), size=int(rng.integers(0, 8)))]


def _generic(rng: np.random.Generator) -> np.generic:
    return pick(rng, [np.float32(0.5), np.int8(-3), np.bool_(True), np.uint64(2**64 - 1), np.float64("nan")])


def _envelope(rng: np.random.Generator) -> dict:
    """An array (or numpy scalar) map with wrong, missing or odd fields, keyed by bytes as openpi does or by str."""
    fields = {"__ndarray__" if rng.random() < 0.7 else "__npgeneric__": pick(rng, [True, 1, "yes"]),
              "data": pick(rng, [b"", rng.bytes(int(rng.integers(1, 64))), "text", None, 5, 1.5]),
              "dtype": pick(rng, ["<f4", "|u1", "|O", "<U4", "|V8", "(2,)<f4", "f4,i4", "<M8[s]", "xyz", "", 5, None]),
              "shape": pick(rng, [[], [2], [-1], [2**40, 2**40], [1.5], "3", None, [1] * 40, [0], [3, 4], [4]])}
    kept = {k: v for k, v in fields.items() if k.startswith("__") or rng.random() < 0.85}
    return {k.encode(): v for k, v in kept.items()} if rng.random() < 0.5 else kept


VALUES: dict[str, Callable[[np.random.Generator], Any]] = {
    "scalar": lambda rng: pick(rng, SCALARS),
    "array": _array,
    "string": _string,
    "list of numbers": _numbers,
    "numpy scalar": _generic,
    "array map": _envelope,
}
FOREIGN_KEYS = [1, -1, 2.5, None, True, b"\xff", b"task", ("a", 1), "", "observation.images.", "images/x"]


# ---- mutators: (case, message) ----------------------------------------------------------------------------------

def _value(rng: np.random.Generator) -> tuple[str, Any]:
    kind = pick(rng, list(VALUES))
    return kind, VALUES[kind](rng)


def replaced_value(rng: np.random.Generator) -> tuple[str, bytes | str]:
    request, key = valid_request(rng), pick(rng, KEYS)
    kind, request[key] = _value(rng)
    return f"{key} = {kind}", msgpack_numpy.packb(request)


def foreign_key(rng: np.random.Generator) -> tuple[str, bytes | str]:
    request, key = valid_request(rng), pick(rng, FOREIGN_KEYS)
    kind, request[key] = _value(rng)
    return f"key {key!r} = {kind}", msgpack_numpy.packb(request)


def dropped_key(rng: np.random.Generator) -> tuple[str, bytes | str]:
    request = valid_request(rng)
    key = pick(rng, list(request))
    del request[key]
    return f"without {key}", msgpack_numpy.packb(request)


def nested_images(rng: np.random.Generator) -> tuple[str, bytes | str]:
    request = valid_request(rng)
    images = {k.removeprefix("observation.images."): request.pop(k) for k in list(request) if "images" in k}
    key = pick(rng, list(images)) if rng.random() < 0.5 else pick(rng, FOREIGN_KEYS[:3])
    kind, images[key] = _value(rng)
    return f"images[{key!r}] = {kind}", msgpack_numpy.packb({**request, "images": images})


def not_a_map(rng: np.random.Generator) -> tuple[str, bytes | str]:
    kind, value = _value(rng)
    return f"top level {kind}", msgpack_numpy.packb(value)


def corrupted_bytes(rng: np.random.Generator) -> tuple[str, bytes | str]:
    message = bytearray(msgpack_numpy.packb(valid_request(rng)))
    for position in rng.integers(len(message), size=int(rng.integers(1, 10))):
        message[position] = int(rng.integers(256))
    return "corrupted bytes", bytes(message)


def truncated(rng: np.random.Generator) -> tuple[str, bytes | str]:
    message = msgpack_numpy.packb(valid_request(rng))
    return "truncated", message[: int(rng.integers(len(message)))]


def spliced(rng: np.random.Generator) -> tuple[str, bytes | str]:
    return "two messages in one", msgpack_numpy.packb(valid_request(rng)) + msgpack.packb(int(rng.integers(100)))


def deeply_nested(rng: np.random.Generator) -> tuple[str, bytes | str]:
    """Built as bytes: msgpack's packer refuses to nest this deep, a hostile client need not."""
    key, depth = pick(rng, KEYS), int(rng.integers(10, 3000))
    levels = [b"\x91" if rng.random() < 0.5 else b"\x81\xa1k" for _ in range(depth)]  # [x] or {"k": x}
    return f"{key} nested {depth} deep", b"\x81" + msgpack.packb(key) + b"".join(levels) + b"\x00"


def random_bytes(rng: np.random.Generator) -> tuple[str, bytes | str]:
    return "random bytes", rng.bytes(int(rng.integers(0, 4000)))


def text_frame(rng: np.random.Generator) -> tuple[str, bytes | str]:
    return "text frame", _string(rng)[:200]


MUTATORS = [replaced_value, replaced_value, replaced_value, foreign_key, dropped_key, nested_images, not_a_map,
            deeply_nested, corrupted_bytes, truncated, spliced, random_bytes, text_frame]


# ---- phase 1 ----------------------------------------------------------------------------------------------------

def classify(reply: Any) -> str:
    if isinstance(reply, dict) and "actions" in reply:
        return "actions"
    error = reply.get("error") if isinstance(reply, dict) else None
    if not isinstance(error, str) or not error:
        return "malformed reply"
    if error.startswith("internal error"):
        return "internal error"
    return "raw exception name" if LEAK.search(error) else "error sentence"


def fuzz(port: int, messages: int, seed: int, max_seconds: float) -> tuple[Counter, set, dict, float]:
    rng = np.random.default_rng(seed)
    outcomes, cases, examples = Counter(), set(), {}
    client = PolicyClient(HOST, port, timeout=30)
    start = time.monotonic()
    for _ in range(messages):
        if time.monotonic() - start > max_seconds:
            break
        case, message = pick(rng, MUTATORS)(rng)
        cases.add(case)
        try:
            reply = client.send_raw(message)
            outcome = classify(reply)
        except (ConnectionClosed, TimeoutError) as error:
            outcome, reply = ("no reply" if isinstance(error, TimeoutError) else "disconnect"), repr(error)
            client.close()
            client = PolicyClient(HOST, port, timeout=30)
        outcomes[outcome] += 1
        if outcome not in ("actions", "error sentence"):
            examples.setdefault(outcome, (case, str(reply)[:300]))
    client.close()
    return outcomes, cases, examples, time.monotonic() - start


# ---- phase 2 ----------------------------------------------------------------------------------------------------

def big_messages() -> dict[str, bytes | str]:
    """Large messages, each just under the size limit unless its name says otherwise."""
    rng = np.random.default_rng(1)
    near = MAX_MESSAGE_BYTES - 2**16
    side = int((near / 9) ** 0.5)  # three uint8 views filling the limit
    views = {f"observation.images.{c}": rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for c in CAMERAS}
    small = valid_request(rng)
    messages = {
        "normal requests, as this client does (a fair share)": msgpack_numpy.packb(small),
        f"valid request, three {side}x{side} views": msgpack_numpy.packb({**small, **views}),
        "float image in 0..255": msgpack_numpy.packb({**small, **views, "observation.images.corner":
                                                      np.full((side // 4, side, 3), 200.0, np.float32)}),
        "instruction of ~16 M characters": msgpack_numpy.packb({**small, "task": "x" * near}),
        "state as a list of ~16 M numbers": msgpack_numpy.packb({**small, "observation.state": [0] * (near - 2**16)}),
        "state as 4,000 lists of 4,000": msgpack_numpy.packb({**small, "observation.state": [[0] * 4000] * 4000}),
        "a map of ~1.5 M keys": msgpack_numpy.packb({f"k{i}": 0 for i in range(near // 11)}),
    }
    assert all(len(m) <= MAX_MESSAGE_BYTES for m in messages.values()), {k: len(m) for k, m in messages.items()}
    return {**messages, "over the size limit": b"\x00" * (MAX_MESSAGE_BYTES + 1)}


def attack(port: int, message: bytes | str, seconds: float) -> Counter:
    outcomes, client = Counter(), PolicyClient(HOST, port, timeout=60)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            outcomes[classify(client.send_raw(message))] += 1
        except ConnectionClosed:
            outcomes["disconnect"] += 1
            client.close()
            client = PolicyClient(HOST, port, timeout=60)
    client.close()
    return outcomes


def hostile(port: int, pipe) -> None:
    """Runs in its own process, so its sending does not hold the server's GIL (a remote client would not)."""
    messages = big_messages()
    pipe.send(list(messages))
    while (order := pipe.recv()) is not None:
        name, seconds = order
        pipe.send(attack(port, messages[name], seconds))


def latencies(client: PolicyClient, request: dict, seconds: float) -> list[float]:
    times, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        client.infer(request)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def under_attack(port: int, seconds: float) -> tuple[list[float], list[tuple[str, list[float], Counter]]]:
    request = valid_request(np.random.default_rng(2))
    pipe, child_pipe = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=hostile, args=(port, child_pipe), daemon=True)
    process.start()
    rows = []
    try:
        with PolicyClient(HOST, port, timeout=60) as client:
            latencies(client, request, 1.0)  # warm-up
            alone = latencies(client, request, seconds)
            if not pipe.poll(120):
                raise RuntimeError("the hostile process did not build its messages within 120 s")
            for name in pipe.recv():
                pipe.send((name, seconds))
                times = latencies(client, request, seconds)
                rows.append((name, times, pipe.recv() if pipe.poll(120) else Counter({"no report": 1})))
        pipe.send(None)
    finally:
        process.join(10)
        if process.is_alive():
            process.terminate()
    return alone, rows


# ---- report -----------------------------------------------------------------------------------------------------

class CountTracebacks(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += bool(record.exc_info) or record.levelno >= logging.ERROR


def alive(port: int) -> bool:
    with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=10) as response:
        healthy = response.status == 200
    with PolicyClient(HOST, port) as client:
        return healthy and client.infer(valid_request(np.random.default_rng(3)))["actions"].shape[0] > 0


def stats(times: list[float]) -> str:
    return f"{np.median(times):.0f} | {np.percentile(times, 95):.0f} | {max(times):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=300, help="phase 1 stops after this long")
    parser.add_argument("--attack-seconds", type=float, default=5, help="per kind of large message in phase 2")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tracebacks = CountTracebacks()
    logging.getLogger().addHandler(tracebacks)
    predictor = make_predictor("tiny")
    with serve_in_background(PolicyServer(predictor, HOST, 0)) as server:
        outcomes, cases, examples, seconds = fuzz(server.port, args.messages, args.seed, args.max_seconds)
        alone, rows = under_attack(server.port, args.attack_seconds)
        survived = alive(server.port)
    cache = predictor.policy.text_encoder
    print(f"tiny preset, torch threads {args.threads}, seed {args.seed}, limits {MAX_MESSAGE_BYTES:,} bytes / "
          f"{MAX_INSTRUCTION_CHARS:,} characters\n")
    print(f"Phase 1: {sum(outcomes.values())} messages of {len(cases)} distinct cases in {seconds:.0f} s\n")
    print("| outcome | messages |\n|---|---|")
    for outcome in ("error sentence", "actions", "internal error", "raw exception name", "malformed reply",
                    "disconnect", "no reply"):
        print(f"| {outcome} | {outcomes[outcome]} |")
    for outcome, (case, reply) in examples.items():
        print(f"\nfirst {outcome}: {case}: {reply}")
    print(f"\nPhase 2: a client's round trip (ms) while another process sends one kind of large message for "
          f"{args.attack_seconds:.0f} s\n")
    print("| the other client sends | its replies | p50 | p95 | max |\n|---|---|---|---|---|")
    print(f"| nothing | | {stats(alone)} |")
    for name, times, counts in rows:
        print(f"| {name} | {', '.join(f'{n} {o}' for o, n in counts.items())} | {stats(times)} |")
    worst = max(max(times) for _, times, _ in rows)
    print(f"\nworst round trip {worst:.0f} ms = {worst / np.median(alone):.1f} x a normal one "
          f"({np.median(alone):.0f} ms)")
    print(f"tracebacks logged by the server: {tracebacks.count}; server alive at the end: {survived}")
    cached = sum(t.nbytes for t in cache.cache.values())
    print(f"instruction cache: {len(cache.cache)} entries, {cached / 2**20:.1f} MiB "
          f"(budget {cache.cache_bytes / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()

"""The real-time chunk broker: it asks for the next chunk while the current one runs, passes the actions that run
meanwhile as the prefix, and switches over where the robot is when the reply arrives."""

import threading
import time

import numpy as np
import pytest

from gigaworld_policy.serving.client import RealTimeChunkBroker

HORIZON, DIMS = 16, 2


class FakeClient:
    """A server whose replies take `latency` seconds: chunk k is k*100 + step (a prefix, if sent, is kept as is)."""

    def __init__(self, latency: float, supports_prefix: bool = True, failing: tuple[int, ...] = ()):
        self.latency, self.requests, self.failing = latency, [], failing
        # as `gwp serve` announces it: a policy trained without prefixes takes none
        self.metadata = {"action_prefix": {"supported": supports_prefix, "max_steps": 8 if supports_prefix else 0}}

    def infer(self, request: dict) -> dict:
        self.requests.append((request, threading.current_thread() is threading.main_thread()))
        time.sleep(self.latency)
        if len(self.requests) in self.failing:
            raise RuntimeError(f"policy server: request {len(self.requests)} failed")
        chunk = len(self.requests) * 100 + np.repeat(np.arange(HORIZON, dtype=np.float32)[:, None], DIMS, 1)
        if "action_prefix" in request:
            prefix = np.asarray(request["action_prefix"])
            chunk[: len(prefix)] = prefix
        return {"actions": chunk}


def run(broker, steps: int, control_hz: float) -> list[np.ndarray]:
    actions = []
    for t in range(steps):
        tick = time.perf_counter()
        actions.append(broker.act({"step": t}))
        time.sleep(max(0.0, 1 / control_hz - (time.perf_counter() - tick)))
    return actions


@pytest.mark.parametrize("mode", ["rtc", "async"])
def test_the_next_chunk_is_asked_for_early_and_continues_where_the_robot_is(mode):
    client = FakeClient(latency=0.025)  # 2.5 control steps at 100 Hz: 3 steps ahead
    broker = RealTimeChunkBroker(client, execute_steps=8, control_hz=100, mode=mode)
    actions = np.stack(run(broker, 24, control_hz=100))[:, 0]
    broker.close()
    assert broker.delay_steps == 3
    # the second request left with the observation of step 5, while steps 5, 6, 7 of chunk 1 ran
    second, in_main_thread = client.requests[1]
    assert second["step"] == 5 and not in_main_thread
    assert ("action_prefix" in second) == (mode == "rtc")
    if mode == "rtc":
        assert np.array_equal(second["action_prefix"][:, 0], [105, 106, 107])
    # chunk 2 starts at its step 3: the three steps since its observation have run already
    assert actions[:8].tolist() == [100 + i for i in range(8)]
    assert actions[8:16].tolist() == [200 + i for i in range(3, 11)]
    third, _ = client.requests[2]  # one period (8 steps) after the second
    assert third["step"] == 13 and (mode == "async" or np.array_equal(third["action_prefix"][:, 0], [208, 209, 210]))
    assert actions[16:24].tolist() == [300 + i for i in range(3, 11)]


def test_rtc_needs_a_policy_that_takes_a_prefix():
    with pytest.raises(ValueError, match="does not take an action prefix .* use mode='async'"):
        RealTimeChunkBroker(FakeClient(0.0, supports_prefix=False), execute_steps=8, control_hz=10)


def test_async_asks_early_from_a_policy_that_takes_no_prefix():
    client = FakeClient(latency=0.025, supports_prefix=False)
    broker = RealTimeChunkBroker(client, execute_steps=8, control_hz=100, mode="async")
    actions = np.stack(run(broker, 16, control_hz=100))[:, 0]
    broker.close()
    second, _ = client.requests[1]
    assert broker.delay_steps == 3 and second["step"] == 5 and "action_prefix" not in second
    assert actions[8:16].tolist() == [200 + i for i in range(3, 11)]


def test_a_failed_request_is_raised_once_and_neither_the_next_act_nor_reset_repeats_it():
    client = FakeClient(latency=0.01, failing=(2, 4))  # 10 ms: 10 steps at 1 kHz, so each request leaves at once
    broker = RealTimeChunkBroker(client, execute_steps=4, control_hz=1000, mode="async")
    assert [broker.act({"step": t})[0] for t in range(4)] == [100, 101, 102, 103]
    with pytest.raises(RuntimeError, match="request 2 failed"):
        broker.act({"step": 4})
    assert broker.act({"step": 5})[0] == 300  # asked again, and waited for
    assert broker.act({"step": 6})[0] == 301  # request 4 leaves, and fails meanwhile
    broker.reset()  # drops it, and its error
    assert broker.act({"step": 0})[0] == 500
    broker.close()

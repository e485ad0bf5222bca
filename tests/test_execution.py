"""Chunks executed under inference latency (sync, async, rtc), ACT's temporal ensembling: what runs at each step,
and the smoothness measure."""

import numpy as np
import pytest

from gigaworld_policy.execution import DelayedChunks, TemporalEnsemble, smoothness

HORIZON = 8


class FakePolicy:
    """Chunk k (k = 1, 2, ...) is k*100 + step; given a prefix it continues it instead: prefix[0] + step."""

    def __init__(self):
        self.asked = []  # (observation step, prefix)

    def __call__(self, observation, prefix):
        self.asked.append((observation, None if prefix is None else prefix[:, 0].tolist()))
        start = len(self.asked) * 100 if prefix is None else prefix[0, 0]
        return (start + np.arange(HORIZON, dtype=np.float64))[:, None]


def run(execution: str, delay: int, steps: int = 12):
    policy = FakePolicy()
    chunks = DelayedChunks(policy, execute_steps=4, delay_steps=delay, execution=execution, hold=lambda a: a)
    actions, starts = [], []
    for t in range(steps):
        action, first = chunks.act(lambda t=t: t)
        actions.append(float(action[0]))
        starts.append(first)
    return actions, starts, policy.asked


def test_without_delay_every_execution_is_the_plain_rollout():
    for execution in ("sync", "async", "rtc"):
        actions, starts, asked = run(execution, 0)
        assert actions == [100, 101, 102, 103, 200, 201, 202, 203, 300, 301, 302, 303]
        assert [step for step, _ in asked] == [0, 4, 8] and all(p is None for _, p in asked)
        assert starts == [i % 4 == 0 for i in range(12)]


def test_sync_holds_still_while_the_next_chunk_is_computed():
    actions, starts, asked = run("sync", 2)
    assert actions == [100, 101, 102, 103, 103, 103, 200, 201, 202, 203, 203, 203]
    assert [step for step, _ in asked] == [0, 4, 10]
    assert starts[6] and not starts[4]


def test_async_asks_early_and_starts_the_next_chunk_where_the_robot_is():
    actions, _, asked = run("async", 2)
    assert [step for step, _ in asked] == [0, 2, 6, 10]
    assert actions == [100, 101, 102, 103, 202, 203, 204, 205, 302, 303, 304, 305]


def test_rtc_sends_the_actions_executed_meanwhile_and_continues_them():
    actions, starts, asked = run("rtc", 2)
    assert asked[1:] == [(2, [102, 103]), (6, [106, 107]), (10, [110, 111])]
    assert actions == [100 + t for t in range(12)]  # continued: no jump where chunks meet
    assert smoothness(np.array(actions)[:, None], np.array(starts))["largest_boundary_jump"] == 1
    jumpy, jumpy_starts, _ = run("async", 2)
    measured = smoothness(np.array(jumpy)[:, None], np.array(jumpy_starts))
    assert measured["within_chunk_step"] == 1 and measured["boundary_jump"] == 98  # 103 -> 202, 205 -> 302


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"execution must be one of \('sync', 'async', 'rtc'\), got 'later'"):
        DelayedChunks(FakePolicy(), 4, 1, "later")
    with pytest.raises(ValueError, match=r"delay_steps must be in \[0, execute_steps = 4\], got 5"):
        DelayedChunks(FakePolicy(), 4, 5, "rtc")
    with pytest.raises(ValueError, match="needs `hold`"):
        DelayedChunks(FakePolicy(), 4, 2, "sync")


class ForecastPolicy:
    """The chunk asked for at step s says, for step s + j, `truth(s + j) + bias(s)`: every chunk aims at the same
    trajectory, each off by its own bias."""

    def __init__(self, bias=lambda s: 0.0):
        self.bias, self.asked = bias, []

    def __call__(self, observation, prefix):
        assert prefix is None
        self.asked.append(observation)
        return (10.0 * (observation + np.arange(HORIZON)) + self.bias(observation))[:, None]


def ensemble_run(policy, execute_steps: int, coeff: float, steps: int = 20):
    ensemble = TemporalEnsemble(policy, execute_steps, coeff)
    acted = [ensemble.act(lambda t=t: t) for t in range(steps)]
    return np.array([float(action[0]) for action, _ in acted]), [first for _, first in acted], ensemble


def test_the_ensemble_of_agreeing_chunks_is_their_trajectory():
    for execute_steps in (1, 3, HORIZON):
        actions, firsts, ensemble = ensemble_run(ForecastPolicy(), execute_steps, coeff=0.01)
        np.testing.assert_allclose(actions, 10.0 * np.arange(20))
        assert firsts == [t % execute_steps == 0 for t in range(20)] and ensemble.plans == -(-20 // execute_steps)


def test_the_ensemble_weighs_the_ith_oldest_chunk_covering_a_step_exp_minus_coeff_i():
    coeff = 0.5
    actions, _, ensemble = ensemble_run(ForecastPolicy(bias=lambda s: float(s)), 1, coeff)
    assert ensemble.plans == 20
    for t in (0, 3, 7, 15):  # chunks asked at steps max(0, t - 7) .. t cover step t (horizon 8), oldest first
        asked = np.arange(max(0, t - HORIZON + 1), t + 1)
        weights = np.exp(-coeff * np.arange(len(asked)))
        assert actions[t] == pytest.approx(10.0 * t + weights @ asked / weights.sum())
    # a chunk every 3 steps: at step 7 the chunks of steps 0 (index 7, its last), 3 and 6 cover it
    actions, _, _ = ensemble_run(ForecastPolicy(bias=lambda s: float(s)), 3, coeff)
    weights = np.exp(-coeff * np.arange(3))
    assert actions[7] == pytest.approx(70.0 + weights @ [0, 3, 6] / weights.sum())
    assert actions[8] == pytest.approx(80.0 + weights[:2] @ [3, 6] / weights[:2].sum())  # step 0's chunk has ended


def test_bad_ensemble_settings_are_named():
    with pytest.raises(ValueError, match="execute_steps must be at least 1, got 0"):
        TemporalEnsemble(ForecastPolicy(), 0)
    with pytest.raises(ValueError, match="finite number, got nan"):
        TemporalEnsemble(ForecastPolicy(), 1, float("nan"))
    with pytest.raises(ValueError, match="a chunk of 8 actions cannot cover the 9 steps"):
        TemporalEnsemble(ForecastPolicy(), HORIZON + 1).act(lambda: 0)

"""Executing action chunks when computing one takes time: which action runs at each control step.

A chunk is computed from the observation of the step it is asked for, and its step 0 is that step. Computing takes
`delay_steps` control steps (0: instantly, as in the plain simulated rollout). Every `execute_steps` steps the
robot switches to a new chunk:

    sync   ask when the current chunk's executed part ends; the robot holds still for the delay, then executes
           the new chunk from its step 0 (a robot driven through a plain request-reply loop)
    async  ask `delay_steps` before the current part ends, keep executing it meanwhile, and switch to the new chunk
           at its step `delay_steps` (where the robot is by then); the chunks may disagree where they meet
    rtc    as async, and the request carries the actions executed meanwhile as a committed prefix, which the new
           chunk keeps and continues (real-time chunking)

With `delay_steps` 0 all three are the plain rollout: ask, then execute `execute_steps` actions.
`serving.client.RealTimeChunkBroker` is the wall-clock counterpart of async/rtc for a real robot.

`TemporalEnsemble` is ACT's temporal ensembling instead: a chunk every `execute_steps` steps (ACT: every step), and
at each step the weighted mean of what every chunk still covering it says for that step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EXECUTIONS = ("sync", "async", "rtc")
ENSEMBLE = "ensemble"  # the execution name of `TemporalEnsemble` (no delay)
# (observation, committed prefix (d, A) or None) -> chunk (H, A), robot units
Predict = Callable[[object, np.ndarray | None], np.ndarray]


class DelayedChunks:
    """One action per `act(observe)` call; `observe()` gives the current observation and is called only at the steps
    a chunk is asked for. `hold(last_action)` is the action that keeps the robot still (sync only)."""

    def __init__(self, predict: Predict, execute_steps: int, delay_steps: int = 0, execution: str = "sync",
                 hold: Callable[[np.ndarray], np.ndarray] | None = None):
        if execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
        if not 0 <= delay_steps <= execute_steps:
            raise ValueError(f"delay_steps must be in [0, execute_steps = {execute_steps}], got {delay_steps}")
        if execution == "sync" and delay_steps and hold is None:
            raise ValueError("sync execution with a delay needs `hold`, the action that keeps the robot still")
        self.predict, self.execute_steps, self.delay_steps = predict, execute_steps, delay_steps
        self.execution, self.hold = execution, hold
        self.plans = 0  # chunks asked for so far
        self._chunk: np.ndarray | None = None
        self._index = self._end = 0
        self._next: np.ndarray | None = None  # the chunk being "computed"
        self._next_start = 0  # where the robot is in it when it takes over
        self._holds = 0  # sync: steps left to hold still
        self._last: np.ndarray | None = None

    def _ask(self, observe: Callable[[], object], prefix: np.ndarray | None) -> np.ndarray:
        self.plans += 1
        return np.asarray(self.predict(observe(), prefix))

    def act(self, observe: Callable[[], object]) -> tuple[np.ndarray, bool]:
        """-> (the action to execute now, whether it is the first of a chunk)."""
        first = False
        if self._chunk is None:  # the episode's first chunk is waited for
            self._chunk, self._index, first = self._ask(observe, None), 0, True
            self._end = min(self.execute_steps, len(self._chunk))
        if self.execution != "sync" and self._next is None and self._index >= self._end - self.delay_steps:
            running = self._chunk[self._index : self._end]  # executed while the next chunk is computed
            prefix = running if self.execution == "rtc" and len(running) else None
            self._next, self._next_start = self._ask(observe, prefix), len(running)
        if self._index >= self._end:
            if self.execution == "sync" and self._next is None:
                self._next, self._next_start, self._holds = self._ask(observe, None), 0, self.delay_steps
            if self._holds:
                self._holds -= 1
                self._last = self.hold(self._last)
                return self._last, False
            self._chunk, self._index, self._next, first = self._next, self._next_start, None, True
            self._end = min(self._index + self.execute_steps, len(self._chunk))
        self._last = self._chunk[self._index]
        self._index += 1
        return self._last, first


class TemporalEnsemble:
    """One action per `act(observe)` call, as `DelayedChunks` (without delay): a chunk is asked for every
    `execute_steps` steps, and the action at step t is the mean of the actions for t of every chunk that covers it,
    the i-th oldest (i = 0, 1, ...) weighted exp(-coeff * i): ACT's temporal ensembling (coeff 0.01; positive
    values trust the older chunks more, negative the newer, 0 weighs them equally)."""

    def __init__(self, predict: Predict, execute_steps: int, coeff: float = 0.01):
        if execute_steps < 1:
            raise ValueError(f"execute_steps must be at least 1, got {execute_steps}")
        if not np.isfinite(coeff):
            raise ValueError(f"the ensemble coefficient must be a finite number, got {coeff}")
        self.predict, self.execute_steps, self.coeff = predict, execute_steps, coeff
        self.plans = 0
        self._step = 0
        self._chunks: list[tuple[int, np.ndarray]] = []  # (step asked at, chunk (H, A)), oldest first

    def act(self, observe: Callable[[], object]) -> tuple[np.ndarray, bool]:
        """-> (the action to execute now, whether a chunk was asked for at this step)."""
        first = self._step % self.execute_steps == 0
        if first:
            chunk = np.asarray(self.predict(observe(), None))
            if len(chunk) < self.execute_steps:
                raise ValueError(f"a chunk of {len(chunk)} actions cannot cover the {self.execute_steps} steps "
                                 f"until the next: execute at most {len(chunk)} steps per plan")
            self.plans += 1
            self._chunks.append((self._step, chunk))
        self._chunks = [(asked, chunk) for asked, chunk in self._chunks if self._step - asked < len(chunk)]
        actions = np.stack([chunk[self._step - asked] for asked, chunk in self._chunks])  # (chunks, A)
        weights = np.exp(-self.coeff * np.arange(len(actions)))
        self._step += 1
        return weights @ actions / weights.sum(), first


def executor(predict: Predict, execute_steps: int, delay_steps: int = 0, execution: str = "sync",
             hold: Callable[[np.ndarray], np.ndarray] | None = None,
             ensemble_coeff: float = 0.01) -> DelayedChunks | TemporalEnsemble:
    """The object that says which action runs at each step for `execution` (one of EXECUTIONS, or ENSEMBLE)."""
    if execution != ENSEMBLE:
        return DelayedChunks(predict, execute_steps, delay_steps, execution, hold)
    if delay_steps:
        raise ValueError(f"temporal ensembling runs without delay (delay_steps 0), got {delay_steps}")
    return TemporalEnsemble(predict, execute_steps, ensemble_coeff)


def smoothness(actions: np.ndarray, starts_chunk: np.ndarray) -> dict[str, float]:
    """actions (T, A) executed, starts_chunk (T,) bool -> mean |a_t - a_{t-1}| (mean over dims) where a chunk meets
    the one before ("boundary") and within chunks, and the largest boundary jump (max over dims)."""
    steps = np.abs(np.diff(np.asarray(actions, dtype=np.float64), axis=0))  # (T-1, A): a_t - a_{t-1}, t >= 1
    boundary = np.asarray(starts_chunk, dtype=bool)[1:]
    return {
        "boundary_jump": float(steps[boundary].mean()) if boundary.any() else float("nan"),
        "within_chunk_step": float(steps[~boundary].mean()) if (~boundary).any() else float("nan"),
        "largest_boundary_jump": float(steps[boundary].max()) if boundary.any() else float("nan"),
    }

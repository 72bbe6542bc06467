"""The tasks: where objects start, a scripted expert, and success from the simulator's state.

A task is a :class:`Task`: ``place`` sets up an episode (objects at random positions drawn
from the episode's generator), ``expert`` returns the next action from the simulator's
state (inverse kinematics does the rest; Gaussian noise on every action makes the
demonstrations vary like a human's), ``success`` reads the state. To add a task, write
these three and add it to :data:`TASKS` (docs/policy_bench.md).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from policy_bench.sim import MAX_STEP, TabletopEnv

EXPERT_NOISE = 0.003  # metres, per action axis


def _toward(tip: np.ndarray, goal: np.ndarray) -> np.ndarray:
    return np.clip(goal - tip, -MAX_STEP, MAX_STEP)


@dataclasses.dataclass(frozen=True)
class Task:
    """One tabletop task."""

    name: str
    instruction: str
    horizon: int  # control steps per episode
    place: Callable[[TabletopEnv, np.random.Generator], None]
    expert: Callable[[TabletopEnv, int], np.ndarray]  # (env, step) -> action without noise
    success: Callable[[TabletopEnv], bool]


# -- lift: pick the red cube up ---------------------------------------------------------

CUBE_RGBA = (0.85, 0.15, 0.12, 1.0)


def _place_lift(env: TabletopEnv, rng: np.random.Generator) -> None:
    position = (rng.uniform(0.42, 0.58), rng.uniform(-0.12, 0.12))
    env.add_object("cube_small.urdf", position, yaw=rng.uniform(-0.4, 0.4), scale=0.9, rgba=CUBE_RGBA)


def _expert_lift(env: TabletopEnv, t: int) -> np.ndarray:
    tip, cube = env.tip(), env.position(env.task_objects[0])
    above = cube + np.array([0.0, 0.0, 0.10])
    grasp = cube + np.array([0.0, 0.0, -0.005])
    held = env.opening() < 0.9 and env.gripper == 0.0
    if held:  # closed on the cube (or closing): lift once the fingers have settled
        closing = np.linalg.norm(tip - grasp) < 0.03 and getattr(env, "_closed_for", 0) < 2
        env._closed_for = getattr(env, "_closed_for", 0) + 1
        if closing:
            return np.array([0.0, 0.0, 0.0, 0.0])
        return np.array([*_toward(tip, np.array([*tip[:2], 0.25])), 0.0])
    env._closed_for = 0
    horizontal = np.linalg.norm(tip[:2] - cube[:2])
    if horizontal > 0.012 and tip[2] < cube[2] + 0.06:
        return np.array([*_toward(tip, np.array([*tip[:2], above[2]])), 1.0])  # up before moving across
    if horizontal > 0.012:
        return np.array([*_toward(tip, above), 1.0])
    if tip[2] > grasp[2] + 0.012:
        return np.array([*_toward(tip, grasp), 1.0])
    return np.array([0.0, 0.0, 0.0, 0.0])  # close


def _success_lift(env: TabletopEnv) -> bool:
    return bool(env.position(env.task_objects[0])[2] > 0.08)


# -- push: slide the blue block onto the green goal ---------------------------------------

BLOCK_RGBA = (0.15, 0.30, 0.85, 1.0)
GOAL_RGBA = (0.10, 0.75, 0.20, 1.0)
PUSH_DISTANCE = 0.15
# An 8 cm block: the open fingers (8 cm apart) push on its face near both edges, so it slides straight.
BLOCK_SCALE = 1.6
BLOCK_HALF = 0.025 * BLOCK_SCALE
GOAL_RADIUS = 0.035
SUCCESS_RADIUS = 0.04  # block centre within 4 cm of the goal centre


def _place_push(env: TabletopEnv, rng: np.random.Generator) -> None:
    side = 1.0 if rng.random() < 0.5 else -1.0
    # The block starts beside the arm's home and goes outward, so the arm starts behind it.
    start = np.array([rng.uniform(0.45, 0.55), side * rng.uniform(0.07, 0.1)])
    goal = start + np.array([0.0, side * PUSH_DISTANCE])
    env.add_object("cube_small.urdf", start, scale=BLOCK_SCALE, rgba=BLOCK_RGBA)
    env.add_marker(goal, GOAL_RADIUS, GOAL_RGBA)


def _expert_push(env: TabletopEnv, t: int) -> np.ndarray:
    """Go behind the block (on the far side from the goal), lower, push along y to the goal."""
    tip, block, goal = env.tip(), env.position(env.task_objects[0]), env.position(env.task_objects[1])
    side = 1.0 if goal[1] > block[1] else -1.0
    if abs(goal[1] - block[1]) < 0.015 or (tip[2] > 0.05 and side * (block[1] - goal[1]) > 0):
        return np.array([0.0, 0.0, MAX_STEP, 1.0])  # there (or past it): lift away, touch nothing more
    behind = np.array([block[0], block[1] - side * (BLOCK_HALF + 0.03), 0.03])
    is_behind = side * (block[1] - tip[1]) > BLOCK_HALF + 0.015 and abs(tip[0] - block[0]) < 0.02
    if not is_behind:
        if np.linalg.norm(tip[:2] - behind[:2]) > 0.01:
            return np.array([*_toward(tip, np.array([*behind[:2], 0.13])), 1.0])
        return np.array([*_toward(tip, behind), 0.0])
    if tip[2] > 0.04:
        return np.array([*_toward(tip, behind), 0.0])
    # Push: keep the tip on the block's line (x) and move toward where the block reaches the goal.
    push_to = np.array([block[0], goal[1] - side * (BLOCK_HALF + 0.01), 0.03])
    # Slow down near the goal so the block does not slide past it.
    return np.array([*np.clip(push_to - tip, -0.015, 0.015), 1.0])


def _success_push(env: TabletopEnv) -> bool:
    block, goal = env.position(env.task_objects[0]), env.position(env.task_objects[1])
    return bool(np.linalg.norm(block[:2] - goal[:2]) < SUCCESS_RADIUS)


TASKS: dict[str, Task] = {
    "lift": Task("lift", "pick up the red cube", 30, _place_lift, _expert_lift, _success_lift),
    "push": Task("push", "push the blue block onto the green goal", 40, _place_push, _expert_push, _success_push),
}

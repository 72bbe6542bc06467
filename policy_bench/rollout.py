"""Closed-loop rollouts of a trained policy in a scene."""

from __future__ import annotations

import numpy as np

from policy_bench.policy import Policy, act
from policy_bench.scenes import EVAL_SEED_SPACE, Scene
from policy_bench.sim import TabletopEnv
from policy_bench.tasks import TASKS


def rollout_seed(rollout: int) -> list[int]:
    """Where rollout ``rollout`` starts: the same for every arm, training seed and condition.

    So arms are compared on identical initial states (paired), and conditions differ only
    in the look of the scene. Demonstrations use seeds in another namespace.
    """
    return [EVAL_SEED_SPACE, 1, rollout]


def task_of_rollout(rollout: int, tasks: list[str]) -> str:
    """Rollouts alternate between the tasks."""
    return tasks[rollout % len(tasks)]


def evaluate(model: Policy, scene: Scene, rollouts: int, tasks: list[str], size: int, cache_dir: str | None = None) -> list[dict]:
    """Run ``rollouts`` episodes of ``model`` in ``scene``; one record per rollout.

    A rollout ends at success (read from the simulator's state) or at the task's horizon;
    ``steps`` is how many actions it took.
    """
    env = TabletopEnv(scene, size=size, cache_dir=cache_dir)
    records = []
    try:
        for i in range(rollouts):
            name = task_of_rollout(i, tasks)
            task = TASKS[name]
            obs = env.reset(task.place, np.random.default_rng(rollout_seed(i)))
            success, steps = False, 0
            while steps < task.horizon and not success:
                obs = env.step(act(model, obs.image, obs.proprio, name))
                steps += 1
                success = task.success(env)
            records.append({"rollout": i, "task": name, "success": bool(success), "steps": steps})
    finally:
        env.close()
    return records

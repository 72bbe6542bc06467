"""Statistics: Wilson score intervals for success rates, paired bootstrap intervals for differences."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a success rate (95 % by default); (0, 1) for no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_bootstrap(a: list[dict], b: list[dict], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean success difference ``a - b`` with a paired bootstrap 95 % interval over seeds and rollouts.

    Records are paired on (seed, condition, rollout): the same training seed and the same
    evaluation episode. Each resample draws training seeds with replacement, then within
    each drawn seed its paired rollouts with replacement (a two-level bootstrap, so both the
    training seed's and the rollouts' variation count). Returns (difference, low, high).
    """
    b_by_key = {(r["seed"], r["condition"], r["rollout"]): r["success"] for r in b}
    by_seed: dict[int, list[float]] = defaultdict(list)
    for r in a:
        key = (r["seed"], r["condition"], r["rollout"])
        if key in b_by_key:
            by_seed[r["seed"]].append(float(r["success"]) - float(b_by_key[key]))
    if not by_seed:
        raise ValueError("no paired rollouts between the two arms")
    seeds = sorted(by_seed)
    differences = [np.asarray(by_seed[s]) for s in seeds]
    observed = float(np.mean(np.concatenate(differences)))
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):
        drawn = rng.integers(0, len(seeds), len(seeds))
        parts = [differences[j][rng.integers(0, len(differences[j]), len(differences[j]))] for j in drawn]
        means[i] = np.concatenate(parts).mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return observed, float(low), float(high)

"""Variant seeds and plans: all the randomness of one (episode, camera, variant), drawn once.

The pipeline derives one seed per (episode, camera, variant) with :func:`variant_seed`,
draws a :class:`CameraPlan` from it with :func:`plan_camera`, and applies that plan to
every frame of the clip (``augment.composite.composite_clip``). Drawing once and applying
everywhere is what keeps an augmented episode free of flicker, and the seed makes a
rerun produce the same dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from augment.jitter import draw_jitter_offset
from augment.settings import CompositeSettings


def variant_seed(recipe_seed: int, episode_key: str, variant: int, camera: str | None = None) -> int:
    """A seed in ``[0, 2**63)`` for one (episode, variant[, camera]), the same in every process.

    It is a SHA-256 of the parts (Python's ``hash()`` of a string changes between
    processes), so a Beam worker, a rerun and a notebook all draw the same variant.
    ``camera=None`` gives the seed of things shared by every camera of the variant.
    """
    parts = json.dumps([int(recipe_seed), str(episode_key), int(variant), camera], separators=(",", ":"))
    digest = hashlib.sha256(parts.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclasses.dataclass
class CameraPlan:
    """The drawn parameters for one (episode, camera, variant), applied to every frame.

    The replay records are albumentations ``ReplayCompose`` records (plain dicts and
    arrays, picklable); ``None`` means no transform.
    """

    seed: int
    frame_shape: tuple[int, int]  # (height, width) the plan was drawn for
    background_replay: dict | None  # the background transforms' drawn parameters
    robot_replay: dict | None  # the robot transforms' drawn parameters
    harmonize: float  # colour harmonisation strength, 0..1 (0: off)
    jitter_offset: tuple[int, int]  # camera shift (dx, dy) in pixels


def plan_camera(settings: CompositeSettings, seed: int, frame_shape: tuple[int, int]) -> CameraPlan:
    """Draw the plan for one (episode, camera, variant) from its seed.

    Each kind of randomness has its own stream spawned from ``seed``, so adding a
    background transform to a recipe does not change the drawn camera jitter, and so on.
    """
    # Imported here, not at the top: albumentations pulls in torch (seconds), and the
    # processes that only need variant_seed (background workers) should not pay for it.
    from augment.photometric import draw_replay, transforms_from_specs

    background_stream, robot_stream, jitter_stream = np.random.SeedSequence(seed).spawn(3)
    frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
    background = transforms_from_specs(settings.background_transforms, "composite.background_transforms")
    robot = transforms_from_specs(settings.robot_transforms, "composite.robot_transforms", pixel_level=True)
    return CameraPlan(
        seed=seed,
        frame_shape=frame_shape,
        background_replay=draw_replay(background, background_stream, frame_shape),
        robot_replay=draw_replay(robot, robot_stream, frame_shape),
        harmonize=float(settings.harmonize),
        jitter_offset=draw_jitter_offset(np.random.default_rng(jitter_stream), settings.jitter_px),
    )

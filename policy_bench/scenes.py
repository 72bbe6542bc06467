"""What a scene looks like: the training scene, the unseen test scenes and their images.

A :class:`Scene` holds every visual parameter of the simulator; the task (robot, objects,
where they start) is separate (``policy_bench.tasks``). Demonstrations are recorded in
:data:`TRAIN` only. Each test condition changes one axis of it (or all at once), so a drop
in success is caused by that axis.

Leakage guard: every test image (table texture, backdrop) is drawn here from a seed in
:data:`EVAL_SEED_SPACE`, with pattern kinds (rings, cells, waves, marble) that no recipe's
procedural backgrounds produce (noise, checker, stripes, gradient, solid), and is only ever
loaded into the simulator at evaluation time; nothing of it is written to the training
dataset or to any folder a recipe reads. ``--eval-backgrounds`` photographs are checked
against the recipes' image libraries (``policy_bench.bench.check_no_leak``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pathlib

import numpy as np
from PIL import Image

#: Seeds of test-scene images live in their own namespace: [EVAL_SEED_SPACE, axis, i].
EVAL_SEED_SPACE = 0x7E57
TRAIN_SEED_SPACE = 0x7A1

#: The scene axes; a test condition changes the fields of one of them.
AXES = {
    "table": ("table",),
    "backdrop": ("backdrop",),
    "light": ("light_direction", "light_color"),
    "distractors": ("distractors",),
    "camera": ("camera_offset",),
    "noise": ("noise_std",),
}

#: Axes the background recipes can plausibly help with (they replace pixels that are
#: neither robot nor task object): backdrop, table (outside a protected region),
#: distractors (unseen things in the background). They should not help with light (the
#: robot and object pixels keep their original shading), the camera shift (geometry, unless
#: composite.jitter_px is set) or sensor noise (the composite keeps the sensor's clean
#: look); baseline's crop and colour jitter address those.
AXES_AUGMENTATION_TARGETS = ("backdrop", "table", "distractors")


@dataclasses.dataclass(frozen=True)
class Look:
    """A procedural image: a pattern kind, its seed and its two colours (0..1 RGB)."""

    kind: str
    seed: tuple[int, ...]
    colors: tuple[tuple[float, float, float], tuple[float, float, float]]
    path: str = ""  # a user's photograph instead of a pattern (kind "photo")


@dataclasses.dataclass(frozen=True)
class Scene:
    """Every visual parameter of a scene."""

    table: Look
    backdrop: Look
    light_direction: tuple[float, float, float] = (0.4, -0.3, 1.0)
    light_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    distractors: tuple[str, ...] = ()
    camera_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    noise_std: float = 0.0  # Gaussian sensor noise, in 0..255 units

    def differing_fields(self, other: Scene) -> set[str]:
        """Names of the fields where ``other`` differs from this scene."""
        return {f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)}


TRAIN = Scene(
    table=Look("wood", (TRAIN_SEED_SPACE, 0), ((0.62, 0.46, 0.30), (0.50, 0.36, 0.22))),
    backdrop=Look("plain", (TRAIN_SEED_SPACE, 1), ((0.80, 0.80, 0.78), (0.74, 0.74, 0.72))),
)


def test_conditions(eval_backgrounds: list[str] | None = None) -> dict[str, Scene]:
    """The evaluation conditions by name: ``train`` (the seen scene), one per axis, and ``all``.

    With ``eval_backgrounds`` (image paths, sorted), the first photograph is the backdrop of
    the ``backdrop`` and ``all`` conditions instead of the procedural rings.
    """
    table = Look("marble", (EVAL_SEED_SPACE, 0, 0), ((0.20, 0.32, 0.45), (0.85, 0.88, 0.90)))
    if eval_backgrounds:
        backdrop = Look("photo", (EVAL_SEED_SPACE, 1, 0), ((0, 0, 0), (0, 0, 0)), path=str(eval_backgrounds[0]))
    else:
        backdrop = Look("rings", (EVAL_SEED_SPACE, 1, 0), ((0.15, 0.55, 0.25), (0.95, 0.80, 0.20)))
    changes = {
        "table": {"table": table},
        "backdrop": {"backdrop": backdrop},
        "light": {"light_direction": (-0.6, 0.5, 0.6), "light_color": (1.0, 0.72, 0.45)},
        "distractors": {"distractors": ("duck", "ball", "lego")},
        "camera": {"camera_offset": (0.04, -0.05, 0.03)},
        "noise": {"noise_std": 12.0},
    }
    conditions = {"train": TRAIN}
    everything: dict = {}
    for axis, fields in changes.items():
        conditions[axis] = dataclasses.replace(TRAIN, **fields)
        everything.update(fields)
    conditions["all"] = dataclasses.replace(TRAIN, **everything)
    return conditions


def render_look(look: Look, size: int = 256) -> np.ndarray:
    """The (size, size, 3) uint8 image of a look (a pattern, or a photograph resized)."""
    if look.kind == "photo":
        with Image.open(look.path) as image:
            return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
    rng = np.random.default_rng(list(look.seed))
    y, x = np.mgrid[0:size, 0:size] / size
    if look.kind == "plain":
        t = 0.5 + 0.08 * rng.standard_normal((size, size))
    elif look.kind == "wood":
        # Grain: stretched noise along x plus slow bands.
        rows = rng.standard_normal(size)
        t = 0.5 + 0.5 * np.sin(12 * y * math.pi + 2.5 * np.cumsum(rows)[None, :].T / math.sqrt(size)) + 0 * x
    elif look.kind == "marble":
        phase = rng.uniform(0, 2 * math.pi, 3)
        t = np.abs(np.sin(6 * x + 4 * np.sin(5 * y + phase[0]) + 2 * np.sin(9 * x * y + phase[1])))
    elif look.kind == "rings":
        cx, cy = rng.uniform(0.2, 0.8, 2)
        t = 0.5 + 0.5 * np.sin(40 * np.hypot(x - cx, y - cy))
    elif look.kind == "cells":
        seeds = rng.uniform(0, 1, (12, 2))
        distance = np.min(np.hypot(x[..., None] - seeds[:, 0], y[..., None] - seeds[:, 1]), axis=-1)
        t = np.clip(distance * 6, 0, 1)
    elif look.kind == "waves":
        t = 0.5 + 0.5 * np.sin(25 * x + 6 * np.sin(8 * y))
    else:
        raise ValueError(f"unknown look kind {look.kind!r}")
    t = np.clip(t, 0.0, 1.0)[..., None]
    a, b = np.asarray(look.colors[0]), np.asarray(look.colors[1])
    return (255 * (a * (1 - t) + b * t)).astype(np.uint8)


def look_file(look: Look, cache_dir: pathlib.Path) -> pathlib.Path:
    """A PNG of ``look`` under ``cache_dir`` (pybullet loads textures from files)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(repr((look.kind, look.seed, look.colors, look.path)).encode()).hexdigest()[:12]
    name = f"{look.kind}-{digest}.png"
    path = cache_dir / name
    if not path.exists():
        Image.fromarray(render_look(look)).save(path)
    return path

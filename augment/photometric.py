"""Albumentations transforms from recipe specs, drawn once and replayed, and colour harmonisation.

A recipe lists transforms as ``{ClassName: {kwargs}}`` (``- HueSaturationValue: {p: 1.0}``).
Their random parameters are drawn once per (episode, camera, variant) with
``A.ReplayCompose`` and stored in the plan as its replay record; replaying that record
on every frame gives every frame the same look, so an augmented episode never flickers.
"""

from __future__ import annotations

import inspect
import random
import re
import sys
from typing import Any, Mapping, Sequence

import cv2
import numpy as np


def _import_albumentations():
    """``albumentations`` without its ``albumentations.pytorch`` (ToTensorV2), which imports
    torch: 3 s in every worker, for a transform that a background or robot transform cannot
    use (it changes the type). Where torch is already loaded, nothing is skipped."""
    if "albumentations" in sys.modules or "torch" in sys.modules:
        import albumentations

        return albumentations
    sys.modules["albumentations.pytorch"] = None  # albumentations/__init__.py: suppress(ImportError)
    try:
        import albumentations
    finally:
        if sys.modules.get("albumentations.pytorch", 0) is None:
            del sys.modules["albumentations.pytorch"]  # importable later, on request
    return albumentations


A = _import_albumentations()


def transform_from_spec(spec: Any, where: str, pixel_level: bool = False) -> A.BasicTransform:
    """Build one albumentations transform from ``{ClassName: {kwargs}}``.

    Raises ``ValueError`` naming ``where`` for a malformed spec, an unknown class, bad
    arguments (albumentations' strict mode), or, with ``pixel_level``, a transform that
    moves pixels (anything but an ``ImageOnlyTransform``).
    """
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ValueError(f"{where}: expected one {{ClassName: {{argument: value}}}} mapping, got {spec!r}")
    ((name, kwargs),) = spec.items()
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{where}.{name}: arguments must be a mapping, got {kwargs!r}")
    cls = _transform_class(name)
    if cls is None:
        raise ValueError(f"{where}: unknown albumentations transform {str(name)[:100]!r}")
    if pixel_level and not issubclass(cls, A.ImageOnlyTransform):
        raise ValueError(
            f"{where}: {name} moves pixels; only pixel-level (ImageOnlyTransform) transforms keep the robot aligned with its mask"
        )
    try:
        return cls(**kwargs, strict=True)
    except Exception as e:  # albumentations reports bad arguments as pydantic or plain errors
        raise ValueError(f"{where}.{name}: invalid arguments {dict(kwargs)!r}: {e}") from None


# Public names only; Lambda runs functions it is given (a recipe holds none, but a transform
# that exists to call code has no place in a data file).
_TRANSFORM_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")
_NOT_RECIPE_TRANSFORMS = {"Lambda", "BasicTransform", "DualTransform", "ImageOnlyTransform", "NoOp"}


def _transform_class(name: Any) -> type | None:
    """The albumentations transform class called ``name``, or ``None``.

    A recipe names it, so the lookup goes no further than a concrete transform class that
    albumentations itself defines: never another attribute of the module, a function, a
    submodule, or a class imported into it from elsewhere.
    """
    if not isinstance(name, str) or not _TRANSFORM_NAME.fullmatch(name) or name in _NOT_RECIPE_TRANSFORMS:
        return None
    cls = vars(A).get(name)
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
        return None
    if not (cls.__module__ or "").startswith("albumentations.") or inspect.isabstract(cls):
        return None
    return cls


def transforms_from_specs(specs: Sequence[Any], where: str, pixel_level: bool = False) -> list[A.BasicTransform]:
    """Build every transform of a recipe list; errors name ``where[index]``."""
    if not isinstance(specs, (list, tuple)):
        raise ValueError(f"{where}: expected a list of {{ClassName: {{argument: value}}}}, got {specs!r}")
    return [transform_from_spec(spec, f"{where}[{i}]", pixel_level) for i, spec in enumerate(specs)]


def draw_replay(
    transforms: list[A.BasicTransform],
    seed_sequence: np.random.SeedSequence,
    frame_shape: tuple[int, int],
) -> dict | None:
    """Draw the transforms' random parameters once; the ``A.ReplayCompose`` record, or ``None``.

    The draw runs on a black dummy frame of ``frame_shape``, so parameters that depend on
    the image size (crops, noise maps) fit the camera. Parameters that albumentations
    derives from image *content* are drawn from that dummy too; colour and noise
    transforms have none.
    """
    if not transforms:
        return None
    compose = A.ReplayCompose(transforms)
    numpy_state, python_state = seed_sequence.generate_state(2, np.uint64)
    compose.set_random_state(np.random.default_rng(int(numpy_state)), random.Random(int(python_state)))
    height, width = frame_shape
    return compose(image=np.zeros((height, width, 3), np.uint8))["replay"]


def apply_replay(replay: dict | None, pixels: np.ndarray, where: str) -> np.ndarray:
    """Apply a drawn record to one ``(H, W, 3)`` image or to all of a ``(T, H, W, 3)`` clip.

    Every frame of a clip gets the same parameters. The result must keep the input's
    shape and dtype (uint8); otherwise ``ValueError`` names ``where``.
    """
    if replay is None:
        return pixels
    target = "image" if pixels.ndim == 3 else "images"
    result = np.asarray(A.ReplayCompose.replay(replay, **{target: pixels})[target])
    if result.shape != pixels.shape or result.dtype != pixels.dtype:
        raise ValueError(
            f"{where}: the transforms turned {pixels.dtype} {pixels.shape} into {result.dtype} "
            f"{result.shape}; they must keep the size and the uint8 type"
        )
    return result


def harmonize_clip(
    frames: np.ndarray,
    robot: np.ndarray,
    background: np.ndarray,
    strength: float,
    where: np.ndarray | None = None,
) -> np.ndarray:
    """Pull the robot's colours toward the background's (Reinhard transfer in LAB).

    ``frames`` (T, H, W, 3) uint8 RGB; ``robot`` (T, H, W) bool; ``background`` (H, W, 3)
    or (T, H, W, 3) uint8 RGB. One per-channel affine map in LAB is fitted on the whole
    clip (the robot pixels' mean/std onto the background's), so it does not flicker, and
    blended with the identity by ``strength`` (0..1). Only pixels in ``where`` (T, H, W)
    bool are mapped (default: the robot's); the others are copied. ``strength`` 0 or an
    empty robot returns ``frames`` itself.
    """
    where = robot if where is None else where
    return apply_harmonization(frames, where, fit_harmonization(frames, robot, background, strength))


def fit_harmonization(frames: np.ndarray, robot: np.ndarray, background: np.ndarray, strength: float) -> np.ndarray | None:
    """The lookup table ``(256, 3)`` uint8 in 8-bit LAB of :func:`harmonize_clip`, fitted on
    ``frames`` (any frames of the clip: a sample fits the same map as the whole clip, up to
    sampling), or ``None`` when there is nothing to do (``strength`` 0, no robot pixels)."""
    if strength <= 0 or not robot.any():
        return None
    # Flat indices: numpy's multi-dimensional boolean indexing is several times slower.
    pixels = frames.reshape(-1, 3)
    robot_lab = _rgb_to_lab(pixels[_spread_sample(np.flatnonzero(robot))]).astype(np.float32)
    background_pixels = background.reshape(-1, 3)
    background_lab = _rgb_to_lab(background_pixels[_spread_sample(np.arange(len(background_pixels)))])
    background_lab = background_lab.astype(np.float32)
    robot_mean, robot_std = robot_lab.mean(axis=0), robot_lab.std(axis=0)
    background_mean, background_std = background_lab.mean(axis=0), background_lab.std(axis=0)
    # A flat-coloured robot has std 0: leave its contrast alone rather than divide by 0.
    scale = np.where(robot_std > 0.5, background_std / np.maximum(robot_std, 0.5), 1.0)
    # The transfer is one affine map per LAB channel, and so is its blend with the
    # identity: lab * gain + offset, applied to 8-bit LAB as a lookup table.
    gain = (1.0 - strength) + strength * scale
    offset = strength * (background_mean - robot_mean * scale)
    return np.clip(np.rint(np.arange(256)[:, None] * gain + offset), 0, 255).astype(np.uint8)


def apply_harmonization(frames: np.ndarray, where: np.ndarray, table: np.ndarray | None) -> np.ndarray:
    """``frames`` with the pixels in ``where`` mapped through ``table`` (:func:`fit_harmonization`);
    ``frames`` itself when ``table`` is ``None`` or ``where`` is empty."""
    if table is None or not where.any():
        return frames
    mapped = np.flatnonzero(where)
    lab = _rgb_to_lab(frames.reshape(-1, 3)[mapped]).reshape(1, -1, 3)
    out = frames.copy()
    out.reshape(-1, 3)[mapped] = cv2.cvtColor(cv2.LUT(lab, table.reshape(1, 256, 3)), cv2.COLOR_LAB2RGB).reshape(-1, 3)
    return out


def _spread_sample(indices: np.ndarray, limit: int = 65536) -> np.ndarray:
    """At most ``limit`` of ``indices``, evenly strided: enough for a mean and a std."""
    if len(indices) <= limit:
        return indices
    return indices[:: -(-len(indices) // limit)]


def _rgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB to (N, 3) uint8 LAB (OpenCV's 8-bit LAB: L*255/100, a+128, b+128).

    The 8-bit conversion is table-driven and several times faster than the float one;
    the Reinhard transfer is affine per channel, so it does not care about the scaling.
    """
    return cv2.cvtColor(np.ascontiguousarray(pixels).reshape(1, -1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3)

"""Synthetic robot clips drawn with OpenCV: an articulated polygon robot on textured backgrounds.

For tests, the CPU learning test and benchmarks: fast (well under a millisecond per
small frame), exact ground truth in the project's label convention (body 1, arm 2,
gripper 3), and deterministic per seed. The robot is a base (body), two arm links and
a two-finger gripper whose joint angles and opening move smoothly over the clip; the
background is smooth colour noise with a few random rectangles and stripes.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from segmentation.labels import ARM, BODY, GRIPPER

#: Robot colour schemes (RGB): body, arm, gripper. Each clip picks one.
PALETTES = (
    ((70, 70, 80), (235, 235, 230), (40, 40, 45)),
    ((60, 60, 70), (240, 140, 40), (30, 30, 35)),
)


@dataclasses.dataclass
class SyntheticClip:
    """Frames and their exact label maps."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    labels: np.ndarray  # (T, H, W) uint8, the project's label convention


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 12, size=image.shape).astype(np.float32)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(width // 8, width // 2), y0 + rng.integers(height // 8, height // 2)
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), rng.uniform(0, 255, 3).tolist(), -1)
    if rng.random() < 0.5:
        period = int(rng.integers(6, 16))
        image[:, (np.arange(width) // period) % 2 == 0] *= 0.8
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw(image: np.ndarray, labels: np.ndarray, polygon: np.ndarray, color, label: int) -> None:
    points = np.round(polygon).astype(np.int32)
    cv2.fillPoly(image, [points], color, lineType=cv2.LINE_8)
    cv2.fillPoly(labels, [points], label, lineType=cv2.LINE_8)


def _bar(start: np.ndarray, end: np.ndarray, width: float) -> np.ndarray:
    """Rectangle of ``width`` around the segment start-end."""
    direction = (end - start) / max(np.linalg.norm(end - start), 1e-6)
    normal = np.array([-direction[1], direction[0]]) * width / 2
    return np.stack([start + normal, end + normal, end - normal, start - normal])


def render_robot_frame(
    background: np.ndarray,
    base: np.ndarray,
    angles: tuple[float, float, float],
    opening: float,
    scale: float,
    palette,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the robot on a copy of ``background``: ``(frame, labels)``."""
    image = background.copy()
    labels = np.zeros(background.shape[:2], dtype=np.uint8)
    body_color, arm_color, gripper_color = palette
    s = scale
    _draw(image, labels, base + np.array([[-0.12, 0.0], [0.12, 0.0], [0.08, -0.1], [-0.08, -0.1]]) * s, body_color, BODY)
    shoulder = base + np.array([0.0, -0.1]) * s
    heading = angles[0]
    elbow = shoulder + np.array([np.sin(heading), -np.cos(heading)]) * 0.3 * s
    heading += angles[1]
    wrist = elbow + np.array([np.sin(heading), -np.cos(heading)]) * 0.25 * s
    _draw(image, labels, _bar(shoulder, elbow, 0.11 * s), arm_color, ARM)
    _draw(image, labels, _bar(elbow, wrist, 0.09 * s), arm_color, ARM)
    heading += angles[2]
    forward = np.array([np.sin(heading), -np.cos(heading)])
    side = np.array([-forward[1], forward[0]])
    palm_end = wrist + forward * 0.06 * s
    _draw(image, labels, _bar(wrist, palm_end, 0.15 * s), gripper_color, GRIPPER)
    for sign in (-1, 1):
        root = palm_end + side * sign * (0.03 + 0.035 * opening) * s
        _draw(image, labels, _bar(root, root + forward * 0.08 * s, 0.035 * s), gripper_color, GRIPPER)
    return image, labels


def render_synthetic_clip(num_frames: int, size: int | tuple[int, int] = 128, seed: int = 0) -> SyntheticClip:
    """A clip of ``num_frames`` frames of size ``size`` (or ``(height, width)``), deterministic per ``seed``."""
    height, width = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    background = _background(rng, height, width)
    palette = PALETTES[int(rng.integers(len(PALETTES)))]
    scale = min(height, width) * rng.uniform(0.9, 1.2)
    base = np.array([width * rng.uniform(0.35, 0.65), height * rng.uniform(0.85, 0.98)])
    start = rng.uniform([-0.6, 0.3, -0.4], [0.6, 1.2, 0.4])
    speed = rng.uniform(-0.15, 0.15, size=3)
    frames, labels = [], []
    for t in range(num_frames):
        angles = tuple(start + speed * t + 0.1 * np.sin(0.5 * t + np.arange(3)))
        opening = 0.5 + 0.5 * np.sin(0.7 * t + seed)
        frame, label = render_robot_frame(background, base, angles, opening, scale, palette)
        frames.append(frame)
        labels.append(label)
    return SyntheticClip(np.stack(frames), np.stack(labels))

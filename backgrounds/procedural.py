"""Procedural backgrounds: textures made on the fly at the camera's size.

Each request draws one texture kind (fractal noise, checkerboard, stripes, gradient or
a solid colour) and one colour palette from its own generator, so the same request
always gets the same texture. Everything is whole-array numpy and OpenCV: a 256x256
texture takes a few milliseconds.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from backgrounds.base import BackgroundConfigError, BackgroundRequest, BackgroundSource

KINDS = ("noise", "checker", "stripes", "gradient", "solid")

#: Hand-picked palettes (RGB). A texture draws a few colours from one and jitters them slightly.
PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "earth": ((110, 84, 58), (160, 126, 88), (196, 172, 132), (86, 96, 60), (140, 110, 80), (60, 48, 38)),
    "indoor": ((230, 226, 214), (200, 190, 170), (160, 120, 80), (120, 84, 52), (180, 180, 184), (90, 92, 98)),
    "pastel": ((244, 194, 194), (194, 228, 204), (190, 210, 240), (250, 236, 184), (214, 196, 236), (250, 214, 178)),
    "vivid": ((230, 40, 40), (250, 200, 20), (30, 160, 60), (30, 90, 220), (150, 40, 190), (250, 120, 20)),
    "ocean": ((10, 40, 80), (20, 90, 140), (60, 150, 190), (150, 210, 220), (230, 240, 236), (20, 120, 110)),
    "gray": ((20, 20, 20), (70, 70, 70), (120, 120, 120), (170, 170, 170), (220, 220, 220), (250, 250, 250)),
}

#: Not a fixed palette: a fresh harmonious palette drawn in HSV for every texture.
RANDOM_PALETTE = "random"

PALETTE_NAMES = (*PALETTES, RANDOM_PALETTE)


@dataclasses.dataclass
class ProceduralOptions:
    """Recipe keys of ``background.source: procedural``."""

    # Texture kinds to draw from, each equally likely; a subset of noise, checker, stripes, gradient, solid.
    kinds: list[str] = dataclasses.field(default_factory=lambda: list(KINDS))
    # Palettes to draw colours from, each equally likely: earth, indoor, pastel, vivid, ocean, gray, random (HSV).
    palettes: list[str] = dataclasses.field(default_factory=lambda: list(PALETTE_NAMES))
    # Largest Gaussian blur sigma in pixels; each background draws its sigma in [0, blur_px] (0: sharp).
    blur_px: float = 0.0


def palette_colours(rng: np.random.Generator, palette: str, count: int) -> np.ndarray:
    """``count`` RGB colours, ``(count, 3)`` float32 in [0, 255], drawn from ``palette``."""
    if palette == RANDOM_PALETTE:
        return _random_hsv_colours(rng, count)
    choices = np.asarray(PALETTES[palette], np.float32)
    picked = choices[rng.choice(len(choices), size=count, replace=count > len(choices))]
    # A little brightness jitter so that one palette gives more than six exact colours;
    # the same for all channels, so greys stay grey.
    return np.clip(picked + rng.normal(0.0, 8.0, (count, 1)), 0, 255).astype(np.float32)


def _random_hsv_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """A harmonious palette: hues analogous, complementary or triadic around a random base hue."""
    base = rng.uniform(0.0, 360.0)
    scheme = rng.integers(3)
    if scheme == 0:  # analogous
        hues = base + rng.uniform(-30.0, 30.0, count)
    elif scheme == 1:  # complementary
        hues = base + 180.0 * rng.integers(2, size=count) + rng.uniform(-10.0, 10.0, count)
    else:  # triadic
        hues = base + 120.0 * rng.integers(3, size=count) + rng.uniform(-10.0, 10.0, count)
    hsv = np.stack([hues % 360.0, rng.uniform(0.15, 0.9, count), rng.uniform(0.2, 0.95, count)], axis=-1).astype(np.float32)
    # OpenCV's float HSV uses hue in degrees and S, V in [0, 1].
    rgb = cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]
    return rgb * np.float32(255.0)


def colour_ramp(values: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Map ``values`` in [0, 1] to ``(..., 3)`` uint8 through evenly spaced ``colours`` (linear in between)."""
    stops = np.linspace(0.0, 1.0, len(colours))
    levels = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(levels, stops, colours[:, c]) for c in range(3)], axis=-1)
    lut = np.clip(np.rint(lut), 0, 255).astype(np.uint8)
    return lut[np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)]


def fractal_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Multi-octave value noise, ``(height, width)`` float32 normalised to [0, 1].

    Each octave is a random grid twice as fine as the last, upsampled with bicubic
    interpolation (smooth like Perlin noise, at the cost of one resize per octave).
    """
    base_cells = rng.uniform(1.5, 6.0)
    persistence = rng.uniform(0.35, 0.65)
    stretch = np.exp(rng.uniform(-1.0, 1.0))  # anisotropy: wood-grain-like when far from 1
    longest = max(height, width)
    # Octaves until the finest grid cell is about two pixels wide; always at least one.
    octaves = max(1, int(np.log2(longest / 2 / base_cells)) + 1)
    total = np.zeros((height, width), np.float32)
    for octave in range(octaves):
        cells = base_cells * 2**octave
        rows = min(height + 1, max(2, int(np.ceil(cells * height / longest * stretch)) + 1))
        cols = min(width + 1, max(2, int(np.ceil(cells * width / longest / stretch)) + 1))
        grid = rng.random((rows, cols), dtype=np.float32)
        total += np.float32(persistence**octave) * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    total -= total.min()
    peak = total.max()
    if peak > 0:
        total /= peak
    # Random contrast: high gain makes blotchy camouflage, low gain soft clouds.
    gain = rng.uniform(1.0, 3.0)
    return np.clip((total - 0.5) * gain + 0.5, 0.0, 1.0)


def _rotated_coordinates(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates along a random direction and across it, ``(H, W)`` float32 each."""
    angle = rng.uniform(0.0, np.pi)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    return xs * cos + ys * sin, ys * cos - xs * sin


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(max(low, high)))))


def _noise(rng, height, width, palette):
    colours = palette_colours(rng, palette, int(rng.integers(2, 5)))
    return colour_ramp(fractal_noise(rng, height, width), colours)


def _checker(rng, height, width, palette):
    colours = palette_colours(rng, palette, 2)
    cell = _log_uniform(rng, 4.0, min(height, width) / 2)
    along, across = _rotated_coordinates(rng, height, width)
    offset = rng.uniform(0.0, 2 * cell, 2).astype(np.float32)
    parity = (np.floor((along + offset[0]) / cell) + np.floor((across + offset[1]) / cell)).astype(np.int64) % 2
    return np.rint(colours[parity]).astype(np.uint8)


def _stripes(rng, height, width, palette):
    colours = palette_colours(rng, palette, int(rng.integers(2, 5)))
    period = _log_uniform(rng, 4.0, max(height, width) / 2)
    along, _ = _rotated_coordinates(rng, height, width)
    band = np.floor((along + rng.uniform(0.0, period * len(colours))) / period).astype(np.int64) % len(colours)
    return np.rint(colours[band]).astype(np.uint8)


def _gradient(rng, height, width, palette):
    colours = palette_colours(rng, palette, int(rng.integers(2, 4)))
    if rng.random() < 0.5:  # linear
        along, _ = _rotated_coordinates(rng, height, width)
        values = (along - along.min()) / max(float(along.max() - along.min()), 1e-6)
    else:  # radial, centred anywhere in the image
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ys = np.arange(height, dtype=np.float32)[:, None] - np.float32(cy)
        xs = np.arange(width, dtype=np.float32)[None, :] - np.float32(cx)
        distance = np.sqrt(ys * ys + xs * xs)
        values = distance / max(float(distance.max()), 1e-6)
    return colour_ramp(values, colours)


def _solid(rng, height, width, palette):
    colour = np.rint(palette_colours(rng, palette, 1)[0]).astype(np.uint8)
    return np.broadcast_to(colour, (height, width, 3)).copy()


_TEXTURES = {"noise": _noise, "checker": _checker, "stripes": _stripes, "gradient": _gradient, "solid": _solid}


def procedural_texture(
    rng: np.random.Generator, height: int, width: int, kind: str, palette: str, blur_px: float = 0.0
) -> np.ndarray:
    """One ``(height, width, 3)`` uint8 texture of ``kind`` coloured from ``palette``.

    ``blur_px`` is the largest Gaussian blur sigma; the sigma itself is drawn from ``rng``.
    """
    image = _TEXTURES[kind](rng, height, width, palette)
    if blur_px > 0:
        sigma = rng.uniform(0.0, blur_px)
        if sigma > 0.3:  # below this the kernel is a single pixel anyway
            image = cv2.GaussianBlur(image, (0, 0), sigma)
    return image


class ProceduralBackground(BackgroundSource):
    """Random textures: fractal noise, checkerboards, stripes, gradients, solid colours."""

    name = "procedural"
    Options = ProceduralOptions

    def check(self) -> None:
        _check_names(self.options.kinds, KINDS, f"{self.key_path}.kinds", "kind")
        _check_names(self.options.palettes, PALETTE_NAMES, f"{self.key_path}.palettes", "palette")
        if self.options.blur_px < 0:
            raise BackgroundConfigError(f"{self.key_path}.blur_px must be >= 0, got {self.options.blur_px}")

    def generate(self, model, request: BackgroundRequest) -> np.ndarray:
        rng = request.rng()
        kind = self.options.kinds[rng.integers(len(self.options.kinds))]
        palette = self.options.palettes[rng.integers(len(self.options.palettes))]
        height, width = request.size
        return procedural_texture(rng, height, width, kind, palette, self.options.blur_px)


def _check_names(names: list[str], allowed: tuple[str, ...], key: str, what: str) -> None:
    if not names:
        raise BackgroundConfigError(f"{key} is empty; allowed values: {', '.join(allowed)}")
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise BackgroundConfigError(
            f"{key}: unknown {what}(s) {', '.join(map(repr, unknown))}; allowed values: {', '.join(allowed)}"
        )

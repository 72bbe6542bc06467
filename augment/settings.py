"""The recipe's ``composite:`` section: how a robot is put over its new background.

The recipe loader (``pipelines/recipe.py``) checks keys and types from the type hints
below, then calls :meth:`CompositeSettings.validate` for the values, all before any Beam
work starts. Example::

    composite:
      feather_px: 2.0
      harmonize: 0.3
      jitter_px: 4
      background_transforms:
        - RandomBrightnessContrast: {brightness_limit: 0.3, p: 1.0}
      protect:
        "*": [{box: [0.0, 0.6, 1.0, 1.0]}]      # bottom 40 %: the table stays
        image_0: [{polygon: [[0.1, 0.1], [0.3, 0.1], [0.2, 0.3]]}]
"""

# No ``from __future__ import annotations``: the recipe loader reads these hints with
# typing.get_type_hints, and plain runtime types keep that simple for everyone.
import dataclasses
import math
from typing import Any, Optional


@dataclasses.dataclass
class CompositeSettings:
    """Compositing options shared by every (episode, camera, variant) of a recipe."""

    feather_px: float = 2.0
    """Width of the soft alpha edge on each side of the robot mask's border, in pixels.

    Alpha is exactly 1 on robot pixels at least this far from the nearest non-robot pixel,
    exactly 0 on other pixels at least this far from the nearest robot pixel (see
    ``augment.composite.robot_alpha``). 0 (or anything up to 1) gives a hard edge."""

    erode_px: int = 0
    """Shrink the robot mask by this many pixels (a disk) before feathering."""

    dilate_px: int = 0
    """Grow the robot mask by this many pixels (a disk) before feathering, after eroding."""

    harmonize: float = 0.0
    """Strength (0..1) of the robot's colour harmonisation toward the new background
    (Reinhard mean/std transfer in LAB); 0 turns it off and keeps robot pixels exact."""

    jitter_px: int = 0
    """Largest per-episode camera shift in pixels; one (dx, dy) is drawn per variant and
    applied to every composited frame. 0 turns it off."""

    background_transforms: list[dict] = dataclasses.field(default_factory=list)
    """Albumentations transforms for the new background, one ``{ClassName: {kwargs}}``
    each; drawn once per variant, applied identically to every frame."""

    robot_transforms: list[dict] = dataclasses.field(default_factory=list)
    """Pixel-level albumentations transforms for the robot's pixels (colour only: a
    geometric transform would move the robot away from its mask)."""

    protect: dict[str, list[dict]] = dataclasses.field(default_factory=dict)
    """Regions that keep their original pixels, per camera name or ``"*"`` (every
    camera): a list of ``{box: [x0, y0, x1, y1]}`` or ``{polygon: [[x, y], ...]}`` in
    relative 0..1 image coordinates (x to the right, y down)."""

    protect_feature: Optional[str] = None
    """Per-step observation feature whose nonzero pixels are protected (union over the
    episode's steps), e.g. ``"{camera}_protect_mask"``; ``{camera}`` is replaced."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming ``composite.<field>`` for the first bad value."""
        _check_non_negative("feather_px", self.feather_px)
        _check_non_negative("erode_px", self.erode_px, integer=True)
        _check_non_negative("dilate_px", self.dilate_px, integer=True)
        _check_non_negative("jitter_px", self.jitter_px, integer=True)
        if not 0.0 <= self.harmonize <= 1.0:
            raise ValueError(f"composite.harmonize must be between 0 and 1, got {self.harmonize!r}")

        # Imported here because albumentations pulls in torch (seconds): reading a recipe
        # should not pay for it until the recipe actually names transforms.
        if self.background_transforms or self.robot_transforms:
            from augment.photometric import transforms_from_specs

            transforms_from_specs(self.background_transforms, "composite.background_transforms")
            transforms_from_specs(self.robot_transforms, "composite.robot_transforms", pixel_level=True)

        if not isinstance(self.protect, dict):
            raise ValueError(f"composite.protect must map camera names (or '*') to lists of regions, got {self.protect!r}")
        for camera, regions in self.protect.items():
            if not isinstance(regions, list):
                raise ValueError(f"composite.protect.{camera} must be a list of regions, got {regions!r}")
            for index, region in enumerate(regions):
                check_region(region, f"composite.protect.{camera}[{index}]")

        if self.protect_feature is not None:
            try:
                self.protect_feature.format(camera="camera")
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(
                    f"composite.protect_feature {self.protect_feature!r}: only the placeholder {{camera}} is allowed ({e!r})"
                ) from None


def check_region(region: Any, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``region`` is a valid box or polygon."""
    if not isinstance(region, dict) or len(region) != 1 or next(iter(region)) not in ("box", "polygon"):
        raise ValueError(f"{where}: expected {{box: [x0, y0, x1, y1]}} or {{polygon: [[x, y], ...]}}, got {region!r}")
    ((kind, value),) = region.items()
    if kind == "box":
        if not (isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_unit_number(v) for v in value)):
            raise ValueError(f"{where}.box: expected [x0, y0, x1, y1] with numbers in 0..1, got {value!r}")
        x0, y0, x1, y1 = value
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"{where}.box: expected x0 < x1 and y0 < y1, got {value!r}")
    else:
        points_ok = (
            isinstance(value, (list, tuple))
            and len(value) >= 3
            and all(isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_unit_number(v) for v in p) for p in value)
        )
        if not points_ok:
            raise ValueError(f"{where}.polygon: expected at least 3 [x, y] points with numbers in 0..1, got {value!r}")


def _is_unit_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0.0 <= value <= 1.0


def _check_non_negative(name: str, value: Any, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value < 0:
        expected = "an integer" if integer else "a number"
        raise ValueError(f"composite.{name} must be {expected} >= 0, got {value!r}")

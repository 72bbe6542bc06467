"""Where a new background comes from: procedural textures, image libraries, the clean plate, diffusion."""

from backgrounds.base import (
    BACKGROUND_SOURCES,
    BackgroundConfigError,
    BackgroundRequest,
    BackgroundSource,
    background_source_class,
    register_background_source,
)

__all__ = [
    "BACKGROUND_SOURCES",
    "BackgroundConfigError",
    "BackgroundRequest",
    "BackgroundSource",
    "background_source_class",
    "register_background_source",
]

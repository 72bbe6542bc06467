"""Image-library backgrounds: random crops of photos from a folder or glob.

Each request picks one image of the library with its own generator, crops a random
window with the camera's aspect ratio and resizes it to the camera's size.

Local paths are read here with :mod:`glob`. Remote paths (``gs://...``) need a
:class:`FileAccess` from the caller: the pipeline builds one on Beam's ``FileSystems``,
which keeps Beam out of this package.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import logging
import os
import re
import threading
import warnings
from typing import Callable

import cv2
import numpy as np

from backgrounds.base import BackgroundConfigError, BackgroundRequest, BackgroundSource

logger = logging.getLogger(__name__)

_GLOB_CHARACTERS = frozenset("*?[")


@dataclasses.dataclass(frozen=True)
class FileAccess:
    """How the library lists and reads files. Both callables must pickle (Beam ships the source)."""

    list_paths: Callable[[str], list[str]]  # glob pattern -> matching file paths; "**" crosses folders
    read_bytes: Callable[[str], bytes]  # path -> the file's bytes


def _local_list_paths(pattern: str) -> list[str]:
    return [path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path)]


def _local_read_bytes(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


LOCAL_FILES = FileAccess(list_paths=_local_list_paths, read_bytes=_local_read_bytes)


DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000: about 190 MB decoded


@dataclasses.dataclass
class ImageLibraryOptions:
    """Recipe keys of ``background.source: images``."""

    # A folder (searched recursively) or a glob pattern of images, e.g. /data/textures or gs://b/photos/*.jpg.
    path: str
    # File name endings that count as images (case-insensitive).
    extensions: list[str] = dataclasses.field(default_factory=lambda: [".jpg", ".jpeg", ".png", ".webp", ".bmp"])
    # Range of the crop's area, as a fraction of the largest window with the camera's aspect ratio.
    scale: list[float] = dataclasses.field(default_factory=lambda: [0.5, 1.0])
    # Mirror half of the crops left-right.
    flip: bool = True
    # Decoded images kept in memory per worker, in megabytes (0: decode on every request).
    cache_mb: int = 256
    # Largest image (width x height) decoded; a larger one is skipped, judged from its header
    # before any pixel is decoded (a 2.6 MB PNG can hold 2 billion pixels: 6 GB decoded).
    max_pixels: int = DEFAULT_MAX_PIXELS


def library_pattern(path: str) -> str:
    """The glob pattern for ``path``: itself if it has wildcards, else every file under the folder."""
    if _GLOB_CHARACTERS & set(path):
        return path
    return path.rstrip("/") + "/**"


def decode_rgb(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray | None, str]:
    """``(H, W, 3)`` uint8 RGB from encoded image bytes, or ``None`` and the reason.

    The image's size is read from its header first (Pillow reads headers without decoding);
    one of more than ``max_pixels`` pixels is refused before OpenCV decodes anything.
    """
    if not data:
        return None, "empty file"
    pixels = image_pixels(data)
    if pixels is not None and pixels > max_pixels:
        return None, f"its header says {pixels} pixels, more than max_pixels {max_pixels}; not decoded"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None, "not a decodable image"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), ""


def image_pixels(data: bytes) -> int | None:
    """Width times height from an encoded image's header, without decoding it; ``None`` if unknown."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:  # lazy: reads the header only
                width, height = header.size
                return width * height
    except Image.DecompressionBombError as e:  # Pillow's own limit (179 MP), far above ours: the size is in the message
        numbers = re.findall(r"\d+", str(e))
        return int(numbers[0]) if numbers else 2**63
    except Exception:  # noqa: BLE001 - not a format Pillow knows: OpenCV decides
        return None


def random_crop(rng: np.random.Generator, image: np.ndarray, height: int, width: int, scale: tuple[float, float]) -> np.ndarray:
    """A random window of ``image`` with aspect ``width / height``, resized to ``(height, width)``.

    The window's area is a fraction in ``scale`` of the largest such window that fits.
    """
    image_height, image_width = image.shape[:2]
    aspect = width / height
    full_width = min(image_width, image_height * aspect)
    side = np.sqrt(rng.uniform(scale[0], scale[1]))
    crop_width = max(1, int(round(full_width * side)))
    crop_height = max(1, min(image_height, int(round(crop_width / aspect))))
    top = int(rng.integers(image_height - crop_height + 1))
    left = int(rng.integers(image_width - crop_width + 1))
    crop = image[top : top + crop_height, left : left + crop_width]
    shrinking = crop_width > width
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


class ImageLibrary:
    """The listed library of one worker and a size-bounded cache of decoded images.

    A plain class so Beam can hold a weak reference to it. Paths are sorted, so a
    request's pick does not depend on how the file system lists them.
    """

    def __init__(self, root: str, paths: list[str], files: FileAccess, cache_bytes: int, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.root = root
        self.max_pixels = max_pixels
        self.paths = paths
        self._files = files
        self._cache_bytes = cache_bytes
        self._cached: dict[str, np.ndarray] = {}
        self._cached_total = 0
        self._unreadable: set[str] = set()
        self.reasons: dict[str, str] = {}  # why each unreadable file was skipped
        self._lock = threading.Lock()  # Beam may share one model between threads

    def image(self, path: str) -> np.ndarray | None:
        """The decoded image at ``path``, or ``None`` (warned once) if it cannot be read or decoded."""
        cached = self._cached.get(path)
        if cached is not None:
            return cached
        if path in self._unreadable:
            return None
        try:
            image, reason = decode_rgb(self._files.read_bytes(path), self.max_pixels)
        # Broad on purpose: remote file systems raise their own errors, and one bad file
        # in a photo library must not stop the pipeline.
        except Exception as error:  # noqa: BLE001
            image, reason = None, f"{type(error).__name__}: {error}"
        with self._lock:
            if image is None:
                if path not in self._unreadable:
                    self.reasons[path] = reason
                    logger.warning("background image library %s: skipping unreadable file %s (%s)", self.root, path, reason)
                    self._unreadable.add(path)
                return None
            if self._cached_total + image.nbytes <= self._cache_bytes and path not in self._cached:
                self._cached[path] = image
                self._cached_total += image.nbytes
        return image

    def all_unreadable(self) -> bool:
        """Whether every file of the library has failed to decode."""
        return len(self._unreadable) == len(self.paths)

    def warm(self) -> None:
        """Decode images in order until the cache is full, and find out early if none can be read."""
        for path in self.paths:
            image = self.image(path)
            if image is not None and path not in self._cached:
                return  # the cache is full (or off): the rest are decoded on demand
        if self.all_unreadable():
            raise BackgroundConfigError(
                f"background image library {self.root}: none of its {len(self.paths)} file(s) could be decoded"
            )

    def random_image(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn readable image; unreadable draws are redrawn."""
        while True:
            if self.all_unreadable():
                raise BackgroundConfigError(f"background image library {self.root}: no file could be decoded")
            image = self.image(self.paths[rng.integers(len(self.paths))])
            if image is not None:
                return image


class ImageLibraryBackground(BackgroundSource):
    """Random crops of the images in a folder or glob."""

    name = "images"
    Options = ImageLibraryOptions

    def __init__(self, options: ImageLibraryOptions | None = None, files: FileAccess | None = None):
        super().__init__(options)
        # None: local files only; remote paths then fail in check() with a clear message.
        self.files = files

    def list_library(self) -> list[str]:
        """Sorted paths of every file in the library whose name ends with one of the extensions."""
        path = self.options.path
        if self.files is None and "://" in path:
            raise BackgroundConfigError(
                f"{self.key_path}.path {path!r} is remote; this source reads remote files only through a "
                f"FileAccess given by the caller (the pipeline passes one built on Beam FileSystems)"
            )
        files = self.files or LOCAL_FILES
        endings = tuple(extension.lower() for extension in self.options.extensions)
        return sorted(p for p in files.list_paths(library_pattern(path)) if p.lower().endswith(endings))

    def check(self) -> None:
        options = self.options
        if not options.path:
            raise BackgroundConfigError(f"{self.key_path}.path is required: a folder or glob of images")
        low_high = options.scale
        if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1] <= 1:
            raise BackgroundConfigError(f"{self.key_path}.scale must be [low, high] with 0 < low <= high <= 1, got {low_high}")
        if options.cache_mb < 0:
            raise BackgroundConfigError(f"{self.key_path}.cache_mb must be >= 0, got {options.cache_mb}")
        if options.max_pixels < 1:
            raise BackgroundConfigError(f"{self.key_path}.max_pixels must be >= 1, got {options.max_pixels}")
        paths = self.list_library()
        if not paths:
            raise BackgroundConfigError(
                f"{self.key_path}.path: no image files match {library_pattern(options.path)!r} "
                f"(extensions {', '.join(options.extensions)})"
            )
        # A library of which nothing decodes stops the run before it starts (exit 2), not on
        # the workers: decode files in order until one works (usually the first).
        library = ImageLibrary(options.path, paths, self.files or LOCAL_FILES, 0, options.max_pixels)
        if not any(library.image(path) is not None for path in paths):
            raise BackgroundConfigError(
                f"{self.key_path}.path: none of the {len(paths)} file(s) of background image library {options.path} "
                f"could be decoded (first: {paths[0]}: {library.reasons[paths[0]]})"
            )

    def load_model(self) -> ImageLibrary:
        options = self.options
        paths = self.list_library()
        if not paths:
            raise BackgroundConfigError(f"{self.key_path}.path: no image files match {library_pattern(options.path)!r}")
        library = ImageLibrary(options.path, paths, self.files or LOCAL_FILES, options.cache_mb * 2**20, options.max_pixels)
        library.warm()
        return library

    def generate(self, model: ImageLibrary, request: BackgroundRequest) -> np.ndarray:
        rng = request.rng()
        image = model.random_image(rng)
        height, width = request.size
        low, high = self.options.scale
        crop = random_crop(rng, image, height, width, (low, high))
        if self.options.flip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop)

"""Clips held encoded and decoded a window at a time.

An episode's frames and label maps travel through the pipeline as the bytes the dataset
stores (JPEG, PNG). Decoded, a 2,000-step camera at 256 px is 390 MB, its label maps
130 MB each; held whole, a worker's memory would grow with episode length. A
:class:`Frames` keeps the encoded frames and decodes only what is asked for: one frame,
a window of consecutive frames, or a few sampled frames. Consumers that need the whole
clip at once (a video model) still get it with ``np.asarray(frames)``.

:class:`Frames` behaves like a read-only ``(T, H, W[, C])`` uint8 array for ``len``,
``shape``, integer and slice indexing and index arrays, so code written for arrays
mostly works unchanged.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import cv2
import numpy as np

#: Frames decoded at a time by the stages that walk a whole clip (compose, label maps).
#: 32 frames of 256 x 256 RGB are 6 MB; at 1024 px, 100 MB.
WINDOW_FRAMES = 32

# What TFDS's decode_image reads: JPEG, PNG, GIF, BMP.
_IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM")


def is_encoded_image(data: Any) -> bool:
    """Whether ``data`` is bytes that start like an encoded image (else, say, an instruction string)."""
    return isinstance(data, bytes) and data.startswith(_IMAGE_MAGIC)


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode JPEG/PNG bytes: RGB ``(H, W, 3)`` or one-channel ``(H, W)`` uint8."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{where}: undecodable image ({len(data)} bytes)")
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
    return image


def encode_image(image: np.ndarray, encoding_format: str) -> bytes | np.ndarray:
    """Encode an RGB ``(H, W, 3)`` or one-channel ``(H, W)`` uint8 image as ``jpeg`` or ``png``.

    ``tensor`` is the format of a camera stored as a uint8 ``Tensor`` feature rather than an
    ``Image``: its frames are written as arrays, so the array is returned as it is.

    Output frames are encoded in the worker with OpenCV: several times faster than TFDS's
    TensorFlow encoder, and the writer stores the bytes as they are. JPEG quality is 95,
    TensorFlow's default.
    """
    if encoding_format == "tensor":
        return np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return _encode_bgr(image, encoding_format)


def encode_frames(frames: np.ndarray, encoding_format: str) -> list[bytes | np.ndarray]:
    """:func:`encode_image` of every frame of ``(T, H, W[, 3])``, the same bytes; the colour
    conversion runs once for the whole window."""
    frames = np.asarray(frames)
    if encoding_format == "tensor" or frames.ndim != 4 or not len(frames):
        return [encode_image(frame, encoding_format) for frame in frames]
    steps, height, width, channels = frames.shape
    bgr = cv2.cvtColor(np.ascontiguousarray(frames).reshape(steps * height, width, channels), cv2.COLOR_RGB2BGR)
    return [_encode_bgr(frame, encoding_format) for frame in bgr.reshape(frames.shape)]


def _encode_bgr(image: np.ndarray, encoding_format: str) -> bytes:
    """:func:`encode_image` of a BGR (or one-channel) image."""
    if encoding_format == "jpeg":
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    elif encoding_format == "png":
        ok, data = cv2.imencode(".png", image)
    else:
        raise ValueError(f"unsupported image encoding {encoding_format!r} (jpeg, png or tensor)")
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {encoding_format}")
    return data.tobytes()


class Frames(Sequence):
    """The frames of one clip, stored encoded (or as arrays) and decoded on access.

    ``items`` holds one entry per frame: JPEG/PNG bytes, or an array for a camera stored as
    a ``Tensor`` feature. ``where`` names the clip in error messages (``"train/000003
    image_0"``). Nothing is cached: each access decodes again, which is what bounds memory.
    """

    def __init__(self, items: Sequence[Any], where: str = "clip"):
        self._items = list(items)
        self._where = where
        self._frame_shape: tuple[int, ...] | None = None

    @classmethod
    def from_array(cls, frames: np.ndarray, encoding_format: str = "png", where: str = "clip") -> "Frames":
        """Encode a decoded clip (label maps: PNG, lossless) frame by frame."""
        return cls([encode_image(frame, encoding_format) for frame in np.asarray(frames, np.uint8)], where)

    @classmethod
    def from_windows(cls, windows: Iterator[np.ndarray], encoding_format: str = "png", where: str = "clip") -> "Frames":
        """Encode a clip that arrives as consecutive windows, holding one window at a time."""
        return cls([encode_image(frame, encoding_format) for window in windows for frame in np.asarray(window, np.uint8)], where)

    @property
    def encoded(self) -> list[Any]:
        """The frames as stored, in order (what an output dataset can write unchanged)."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """``(H, W)`` or ``(H, W, C)`` of one decoded frame (the first is decoded once to learn it)."""
        if self._frame_shape is None:
            self._frame_shape = tuple(self._decode(0).shape) if self._items else (0, 0)
        return self._frame_shape

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.frame_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    dtype = np.dtype(np.uint8)

    def __getitem__(self, index):
        """``frames[t]``: one ``(H, W[, C])`` frame; a slice or index array: a stacked window;
        a tuple indexes the frames by its first entry and the pixels by the rest."""
        if isinstance(index, tuple):
            frames = self[index[0]]
            if isinstance(index[0], (int, np.integer)):
                return frames[index[1:]]
            return frames[(slice(None), *index[1:])]
        if isinstance(index, (int, np.integer)):
            return self._decode(int(index))
        if isinstance(index, slice):
            positions = range(*index.indices(len(self)))
        else:
            positions = np.arange(len(self))[np.asarray(index)]
        return self._stack([int(t) for t in np.atleast_1d(positions)])

    def window(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start`` to ``stop - 1`` decoded: ``(n, H, W[, C])`` uint8."""
        return self[start:stop]

    def windows(self, size: int = WINDOW_FRAMES) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, window)`` over the whole clip in order, ``size`` frames at a time."""
        for start in range(0, len(self), size):
            yield start, self.window(start, start + size)

    def __array__(self, dtype=None, copy=None):
        """The whole clip decoded, for consumers that need every frame at once."""
        array = self._stack(list(range(len(self))))
        return array if dtype is None else array.astype(dtype)

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(len(self)):
            yield self._decode(t)

    def __repr__(self) -> str:
        return f"Frames({self._where}, {len(self)} frames)"

    def _decode(self, t: int) -> np.ndarray:
        item = self._items[t]
        if isinstance(item, bytes):
            return decode_image(item, f"{self._where}, step {t}")
        return np.asarray(item, np.uint8)

    def _stack(self, positions: list[int]) -> np.ndarray:
        if not positions:
            return np.zeros((0, *self.frame_shape), np.uint8)
        return np.stack([self._decode(t) for t in positions])


def window_of(clip: Any, start: int, stop: int) -> np.ndarray:
    """Frames ``start:stop`` of a :class:`Frames` or an array, as an array."""
    return np.asarray(clip[start:stop])

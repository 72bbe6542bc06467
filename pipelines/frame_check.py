"""Checking an episode's records against the features the dataset declares.

TFDS writes whatever bytes it is given for an ``Image`` feature, and only fails when the
dataset is loaded (``as_dataset``), long after the job reported success. So before an
episode is written, every encoded image under ``steps/observation`` is checked against
its declared feature: it must be a JPEG or PNG whose header gives the declared height,
width, channels and bit depth, and whose body decodes to the end (a valid header over a
truncated or damaged body would be written and fail to load). The header check costs
microseconds; the decode is the cheapest full one OpenCV offers: a JPEG at 1/8 scale in
grey (every entropy-coded block is still read, so truncation and damage show; the inverse
DCT mostly is skipped), a PNG in full. ``benchmarks/copy_throughput.py --floor`` measures
what it costs a copy.

:func:`describe_record_mismatch` explains why TFDS could not parse a record at all (a
``features.json`` that disagrees with the records), naming the feature and both shapes.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from pipelines.episode import observation_value
from pipelines.rlds_io import leaf_features


class FrameError(ValueError):
    """An image does not match its declared feature; the message names camera and step."""


def image_features(features) -> dict[str, Any]:
    """Every ``Image`` feature under ``steps/observation``, by name (nested: ``images/wrist``)."""
    return {name: f for name, f in leaf_features(features["steps"]["observation"]) if isinstance(f, tfds.features.Image)}


def check_episode_images(steps: list[dict], features: dict[str, Any]) -> None:
    """Raise :class:`FrameError` at the first encoded image that does not fit its feature.

    ``steps`` are the episode's steps with images still encoded (``SkipDecoding``);
    ``features`` come from :func:`image_features`.
    """
    for name, feature in features.items():
        declared = tuple(feature.shape)
        for t, step in enumerate(steps):
            value = observation_value(step["observation"], name)
            if not isinstance(value, (bytes, bytearray)):
                continue  # already an array: TFDS checked it while parsing
            data = bytes(value)
            problem = _image_problem(data, declared, np.dtype(feature.np_dtype)) or _decode_problem(data)
            if problem:
                raise FrameError(f"camera {name}, step {t}: {problem}")


def _image_problem(data: bytes, declared: tuple, dtype: np.dtype) -> str | None:
    """What is wrong with encoded image ``data`` for a feature of shape ``declared``, or ``None``."""
    if not data:
        return "empty image (0 bytes)"
    header = (
        _png_header(data) if data.startswith(b"\x89PNG\r\n\x1a\n") else _jpeg_header(data) if data[:2] == b"\xff\xd8" else None
    )
    if header is None:
        return f"not a JPEG or PNG image ({len(data)} bytes of unrecognised data)"
    if isinstance(header, str):
        return header
    height, width, channels, bits, kind = header
    problems = []
    want_h, want_w, want_c = (list(declared) + [None, None, None])[:3]
    if (want_h is not None and height != want_h) or (want_w is not None and width != want_w):
        problems.append(f"{kind} of {height}x{width}, declared {want_h}x{want_w}")
    # A palette PNG decodes to the declared channels; other channel counts do not match.
    if want_c is not None and channels is not None and channels != want_c:
        problems.append(f"{kind} has {channels} channel(s), declared {want_c}")
    if bits != dtype.itemsize * 8:
        problems.append(f"{kind} has {bits}-bit samples, declared {dtype.name}")
    return "; ".join(problems) or None


def _decode_problem(data: bytes) -> str | None:
    """``None`` if the (header-checked) JPEG or PNG ``data`` decodes to the end, else what is wrong."""
    import cv2

    jpeg = data[:2] == b"\xff\xd8"
    # Reduced-size grey decoding only exists for JPEG; a PNG is inflated whole either way.
    flag = cv2.IMREAD_REDUCED_GRAYSCALE_8 if jpeg else cv2.IMREAD_UNCHANGED
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error:
        decoded = None
    if decoded is None or decoded.size == 0:
        return f"{'JPEG' if jpeg else 'PNG'} image does not decode ({len(data)} bytes: body truncated or damaged)"
    return None


def describe_empty_images(features, data: bytes) -> str | None:
    """``"camera X, step t: empty image (0 bytes)"`` for the first empty encoded image of a raw record, or ``None``.

    TFDS decodes some images while parsing (float depth images, which it stores as PNG):
    an empty one fails there with a decoder's assertion, which says nothing useful.
    """
    import tensorflow as tf

    try:
        example = tf.train.Example.FromString(data)
    except Exception:  # noqa: BLE001 - not a tf.train.Example: another describer's case
        return None
    values = example.features.feature
    for name in image_features(features):
        key = f"steps/observation/{name}"
        if key in values:
            for t, frame in enumerate(values[key].bytes_list.value):
                if not frame:
                    return f"camera {name}, step {t}: empty image (0 bytes)"
    return None


def _png_header(data: bytes) -> tuple | str:
    if len(data) < 33 or data[12:16] != b"IHDR":
        return "PNG image without a valid header (truncated?)"
    width, height, bits, colour = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: None, 4: 2, 6: 4}.get(colour)
    return height, width, channels, bits, "PNG"


# JPEG start-of-frame markers (baseline, extended, progressive, lossless, ...): they hold the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_header(data: bytes) -> tuple | str:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return "JPEG image with a damaged header"
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in _SOF:
            if position + 10 > len(data):
                break
            bits, height, width, channels = struct.unpack(">BHHB", data[position + 4 : position + 10])
            return height, width, channels, bits, "JPEG"
        if marker == 0xDA:  # start of scan before any frame header
            break
        position += 2 + length
    return "JPEG image without a frame header (truncated?)"


# ---------------------------------------------------------------------------------------
# Records that do not parse


def describe_record_mismatch(features, data: bytes) -> str | None:
    """Why ``data`` (one serialized episode) does not fit ``features``, naming the feature.

    TFDS's own parse errors say that a reshape failed, not which feature; this compares
    every flattened feature's value count with its declared shape times the number of
    steps. ``None`` when every count fits (the problem is elsewhere).
    """
    import tensorflow as tf

    try:
        example = tf.train.Example.FromString(data)
    except Exception:  # noqa: BLE001 - not even a tf.train.Example
        return "the record is not a serialized tf.train.Example"
    values = example.features.feature
    infos = dict(_flat_serialized_info(features.get_serialized_info()))
    steps = _step_count(values, infos)
    for key, info in infos.items():
        if key not in values:
            return f"{key}: declared in features.json, missing from the record"
        count = _value_count(values[key])
        per_item = int(np.prod([d for d in info.shape[info.sequence_rank :] if d is not None] or [1]))
        items = steps if info.sequence_rank else 1
        if any(d is None for d in info.shape[info.sequence_rank :]) or info.dtype == tf.string:
            continue  # variable-size values cannot be counted
        if count != per_item * items:
            shape = tuple(info.shape[info.sequence_rank :])
            where = f"per step over {steps} steps" if info.sequence_rank else ""
            have = count / items if items else count
            have_text = f"{int(have)}" if items and count % items == 0 else f"{count} in all"
            return f"{key}: shape {shape} declared, record has {have_text} values {where}".strip()
    return None


def _flat_serialized_info(info, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in info.items():
        key = f"{prefix}/{name}" if prefix else name
        if isinstance(value, dict):
            yield from _flat_serialized_info(value, key)
        else:
            yield key, value


def _value_count(feature) -> int:
    kind = feature.WhichOneof("kind")
    return len(getattr(feature, kind).value) if kind else 0


def _step_count(values, infos) -> int:
    """Steps in the episode: the value count of a per-step scalar feature (is_first, reward...)."""
    for key, info in infos.items():
        if info.sequence_rank and len(info.shape) == info.sequence_rank and key in values:
            return _value_count(values[key])
    return 0

"""Reading one TFRecord shard so that damage costs only the damaged records.

A TFRecord file is a sequence of records, each framed as::

    uint64 length | uint32 masked_crc32c(length) | data[length] | uint32 masked_crc32c(data)

Beam's and TensorFlow's readers stop at the first bad frame, so one flipped byte or a
few KB of garbage in the middle of a shard would lose every later episode. Here a bad
frame starts a *damaged span*; reading resumes at the next offset where a whole frame
checks (both CRCs and a plausible length), so intact records after the damage are kept.
Two CRC-32C checks on the same frame make a false resynchronisation vanishingly rare.

The reader knows nothing about episodes or splits: it yields :class:`Record` and
:class:`DamagedSpan` in file order. :func:`read_shard` below maps them to
episode indices with the shard lengths ``dataset_info.json`` promises.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import BinaryIO, Iterator

import google_crc32c
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.rlds_io import RawEpisode, ReadFailure, ShardSpec, episode_key

_HEADER = 12  # uint64 length + uint32 crc of the length
_FOOTER = 4  # uint32 crc of the data
_CHUNK = 1 << 20  # bytes read at a time while looking for the next good frame


@dataclasses.dataclass(frozen=True)
class Record:
    """One intact record and the byte offset of its frame in the file."""

    offset: int
    data: bytes


@dataclasses.dataclass(frozen=True)
class DamagedSpan:
    """Bytes ``[start, end)`` that hold no intact frame; ``end`` is the file size at a
    truncated tail. ``reason`` says what was wrong with the first bad frame."""

    start: int
    end: int
    reason: str

    @property
    def size(self) -> int:
        return self.end - self.start


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(handle: BinaryIO, file_size: int | None = None) -> Iterator[Record | DamagedSpan]:
    """Yield every intact record of an open shard, and a span for each damaged region.

    ``file_size`` bounds plausible record lengths (a corrupt length field would
    otherwise ask for gigabytes); pass it when known.
    """
    reader = _Reader(handle)
    while True:
        offset = reader.position
        frame = reader.frame(file_size)
        if frame is None:
            return  # clean end of file
        if isinstance(frame, bytes):
            yield Record(offset, frame)
            continue
        # A bad frame at `offset`: look for the next offset where a whole frame checks.
        reason = frame
        resync = reader.resync(offset + 1, file_size)
        yield DamagedSpan(offset, resync if resync is not None else reader.size(), reason)
        if resync is None:
            return


class _Reader:
    """A forward reader over a file handle that can re-read from any offset it has seen.

    Only the bytes since the last good frame are kept, so memory stays bounded by the
    largest record plus the damaged region scanned so far.
    """

    def __init__(self, handle: BinaryIO):
        self._handle = handle
        self._buffer = bytearray()
        self._buffer_start = 0  # file offset of _buffer[0]
        self.position = 0
        self._eof = False

    def _fill(self, end: int) -> None:
        """Make sure bytes up to file offset ``end`` are buffered (or the file ended)."""
        while not self._eof and self._buffer_start + len(self._buffer) < end:
            chunk = self._handle.read(max(_CHUNK, end - self._buffer_start - len(self._buffer)))
            if not chunk:
                self._eof = True
                break
            self._buffer += chunk

    def _bytes(self, start: int, length: int) -> bytes:
        self._fill(start + length)
        lo = start - self._buffer_start
        return bytes(self._buffer[lo : lo + length])

    def _discard_before(self, offset: int) -> None:
        drop = offset - self._buffer_start
        if drop > 0:
            del self._buffer[:drop]
            self._buffer_start = offset

    def size(self) -> int:
        """The file's size (reads to the end)."""
        while not self._eof:
            self._fill(self._buffer_start + len(self._buffer) + _CHUNK)
        return self._buffer_start + len(self._buffer)

    def frame(self, file_size: int | None) -> bytes | str | None:
        """The record at ``position`` (advancing past it), a reason it is bad, or ``None`` at EOF."""
        start = self.position
        header = self._bytes(start, _HEADER)
        if not header:
            return None
        checked = self._check(start, file_size)
        if isinstance(checked, str):
            return checked
        self.position = start + _HEADER + len(checked) + _FOOTER
        self._discard_before(self.position)
        return checked

    def _check(self, start: int, file_size: int | None) -> bytes | str:
        header = self._bytes(start, _HEADER)
        if len(header) < _HEADER:
            return f"file ends inside a record header ({len(header)} of {_HEADER} bytes)"
        (length,) = struct.unpack("<Q", header[:8])
        (length_crc,) = struct.unpack("<I", header[8:])
        if masked_crc(header[:8]) != length_crc:
            return "record header fails its checksum"
        if file_size is not None and start + _HEADER + length + _FOOTER > file_size:
            return f"record of {length} bytes runs past the end of the file (truncated)"
        body = self._bytes(start + _HEADER, length + _FOOTER)
        if len(body) < length + _FOOTER:
            return f"record of {length} bytes runs past the end of the file (truncated)"
        data, (data_crc,) = body[:length], struct.unpack("<I", body[length:])
        if masked_crc(data) != data_crc:
            return "record data fails its checksum"
        return data

    def resync(self, start: int, file_size: int | None) -> int | None:
        """The first offset ``>= start`` where a whole frame checks; ``None`` if none does."""
        offset = start
        while True:
            self._fill(offset + _HEADER)
            end = self._buffer_start + len(self._buffer)
            if offset + _HEADER > end:
                return None
            # Only a header whose own CRC checks is worth reading a body for.
            lo = offset - self._buffer_start
            header = bytes(self._buffer[lo : lo + _HEADER])
            if masked_crc(header[:8]) == struct.unpack("<I", header[8:])[0]:
                if isinstance(self._check(offset, file_size), bytes):
                    self.position = offset
                    return offset
            offset += 1
            if offset - self._buffer_start > _CHUNK:
                self._discard_before(offset)  # never read again: keep memory bounded


# ---------------------------------------------------------------------------------------
# Episodes of one shard


def read_shard(shard: ShardSpec, max_episodes: int | None = None) -> Iterator[RawEpisode | ReadFailure]:
    """Yield the shard's episodes in order, and a :class:`ReadFailure` per lost run of them.

    Records are episodes ``shard.first_index, first_index + 1, ...``. Until the first
    damage they stream straight through. After it, the rest of the shard is mapped first
    (offsets only) so that the intact episodes after the damage get their true indices:
    ``dataset_info.json`` says how many episodes the shard holds, so the damaged spans
    lost ``expected - intact`` of them. ``max_episodes`` caps the split's index.
    """
    stop = shard.first_index + shard.expected
    if max_episodes is not None:
        stop = min(stop, max_episodes)
    if shard.first_index >= stop:
        return
    lost = stop - shard.first_index
    try:
        matches = FileSystems.match([shard.path])[0].metadata_list
        if not matches:
            yield ReadFailure(
                shard.split,
                shard.path,
                shard.first_index,
                lost,
                f"shard file {shard.path} is missing (named in dataset_info.json)",
            )
            return
        size = matches[0].size_in_bytes
        handle = FileSystems.open(shard.path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as e:  # noqa: BLE001 - any I/O error loses the whole shard
        yield ReadFailure(shard.split, shard.path, shard.first_index, lost, f"cannot open shard {shard.path}: {e}")
        return

    index = shard.first_index
    after_damage: list[Record | DamagedSpan] = []
    with handle:
        for item in read_records(handle, size):
            if after_damage or isinstance(item, DamagedSpan):
                # Keep only where the record is; it is read again once indices are known.
                after_damage.append(Record(item.offset, b"") if isinstance(item, Record) else item)
                continue
            if index >= stop:
                return
            yield RawEpisode(episode_key(shard.split, index), shard.split, index, item.data, shard.path)
            index += 1
    if not after_damage:
        if index < stop:
            found = index - shard.first_index
            reason = f"shard ends after {found} of {shard.expected} episodes (truncated at byte {size})"
            yield ReadFailure(shard.split, shard.path, index, stop - index, reason, offset=size)
        return
    yield from _after_damage(shard, index, stop, after_damage)


def _after_damage(
    shard: ShardSpec, index: int, stop: int, items: list[Record | DamagedSpan]
) -> Iterator[RawEpisode | ReadFailure]:
    intact = sum(isinstance(item, Record) for item in items)
    spans = [item for item in items if isinstance(item, DamagedSpan)]
    lost_total = max(0, shard.first_index + shard.expected - index - intact)
    lost = _share_losses(lost_total, [span.size for span in spans])
    handle = FileSystems.open(shard.path, compression_type=CompressionTypes.UNCOMPRESSED)
    with handle:
        for item in items:
            if index >= stop:
                return
            if isinstance(item, DamagedSpan):
                count = min(lost.pop(0), stop - index)
                if count:
                    reason = (
                        f"damaged bytes {item.start}-{item.end} of the shard ({item.reason}): "
                        f"{count} episode(s) lost; dataset_info.json lists {shard.expected} in this shard"
                    )
                    yield ReadFailure(shard.split, shard.path, index, count, reason, offset=item.start)
                index += count
                continue
            handle.seek(item.offset)
            (length,) = struct.unpack("<Q", handle.read(8))
            handle.read(4)
            yield RawEpisode(episode_key(shard.split, index), shard.split, index, handle.read(length), shard.path)
            index += 1


def _share_losses(total: int, span_sizes: list[int]) -> list[int]:
    """Split ``total`` lost episodes over damaged spans.

    With one span (the usual case) it lost them all. With several the index cannot say
    which lost how many: each damaged span is taken to have cost at least one episode,
    and the rest is shared in proportion to the spans' bytes (largest remainders first).
    """
    if not span_sizes:
        return []
    shares = [1 if i < total else 0 for i in range(len(span_sizes))]
    rest = total - sum(shares)
    weight = sum(span_sizes) or 1
    exact = [rest * size / weight for size in span_sizes]
    extra = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - extra[i]), i))
    for i in by_remainder[: rest - sum(extra)]:
        extra[i] += 1
    return [share + more for share, more in zip(shares, extra)]

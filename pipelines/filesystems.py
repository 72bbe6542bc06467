"""Beam's file systems for sources that read files (image libraries), so ``gs://`` works.

The background sources take a ``backgrounds.images.FileAccess`` and know nothing of Beam;
this module supplies one backed by ``apache_beam.io.filesystems``. The functions are
module-level so that the source pickles with them.
"""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems

from backgrounds.images import FileAccess


def list_paths(pattern: str) -> list[str]:
    """Files matching a glob (``**`` crosses folders), local or remote."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as handle:
        return handle.read()


def beam_file_access() -> FileAccess:
    return FileAccess(list_paths=list_paths, read_bytes=read_bytes)

"""Beam's file systems for everything the pipeline reads or writes besides the dataset.

Local paths and remote ones (``gs://`` with the ``gcp`` extra) go through
``apache_beam.io.filesystems``, so a job whose ``output.dir`` is a bucket writes its
report, failures and previews there, from the launcher and from the workers alike.
The background sources take a ``backgrounds.images.FileAccess`` and know nothing of
Beam; :func:`beam_file_access` supplies one. The functions are module-level so that
whatever holds them pickles.
"""

from __future__ import annotations

import os
import shutil

from apache_beam.io.filesystems import FileSystems

from backgrounds.images import FileAccess


def is_remote(path: str) -> bool:
    return "://" in path


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)


def folder_exists(path: str) -> bool:
    """Whether a folder exists (remote: whether any object lies under the prefix)."""
    if not is_remote(path):
        return os.path.exists(path)
    return bool(list_paths(join(path, "**")))


def exists(path: str) -> bool:
    """Whether a file or folder exists at ``path`` (remote: a file, or objects under the prefix)."""
    if not is_remote(path):
        return os.path.lexists(path)
    return FileSystems.exists(path) or folder_exists(path)


def make_folder(path: str) -> None:
    """Create a folder and its parents (remote stores have no folders: nothing to do)."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def list_folders(path: str) -> list[str]:
    """The immediate sub-folders of ``path`` (none if it does not exist)."""
    if not is_remote(path):
        if not os.path.isdir(path):
            return []
        return sorted(os.path.join(path, name) for name in os.listdir(path) if os.path.isdir(os.path.join(path, name)))
    prefix = path.rstrip("/") + "/"
    children = {p[len(prefix) :].split("/", 1)[0] for p in list_paths(join(path, "**")) if "/" in p[len(prefix) :]}
    return sorted(prefix + child for child in children)


def move(source: str, destination: str) -> None:
    """Move a file or folder. Locally one rename (atomic on one file system); remotely
    every object under ``source`` is renamed (copied, then deleted)."""
    if not is_remote(source):
        os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
        os.rename(source, destination)
        return
    if FileSystems.exists(source):
        FileSystems.rename([source], [destination])
        return
    prefix = source.rstrip("/") + "/"
    files = list_paths(join(source, "**"))
    FileSystems.rename(files, [join(destination, f[len(prefix) :]) for f in files])


def list_paths(pattern: str) -> list[str]:
    """Files matching a glob (``**`` crosses folders), local or remote."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as handle:
        return handle.read()


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` at ``path``, replacing any file there (local parent folders are made)."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with FileSystems.create(path) as handle:
        handle.write(data)


def delete_tree(path: str) -> None:
    """Delete a folder (or a remote prefix) and everything in it, if it exists."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    files = list_paths(join(path, "**"))
    if files:
        FileSystems.delete(files)


def beam_file_access() -> FileAccess:
    return FileAccess(list_paths=list_paths, read_bytes=read_bytes)

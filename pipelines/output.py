"""The output folder: checked before a run, locked, written in a scratch folder, swapped in at the end.

A run never writes into ``output.dir`` directly. Everything it produces (the dataset
``<name>/<version>/``, ``report.json``, ``report.html``, ``failures.jsonl``,
``previews/``, and ``part.json`` for a part of a partitioned run) goes into a scratch
folder beside them, ``output.dir/.oxe-augment-run-<id>/``, and only a run that finished
is swapped in by :meth:`OutputTransaction.commit`:

1. a ``_COMMIT`` marker is written into the scratch folder (from here on the run is
   done; a crash is finished by the next run, not undone);
2. each earlier item is moved aside into the scratch folder, and the new one moved in;
3. the scratch folder, holding the earlier items, is deleted.

So a run killed at any point before step 1 leaves the earlier output exactly as it was
(and no dataset where TFDS would find one); a run killed during steps 2-3 is completed
by the next run into the same folder (:meth:`OutputTransaction.recover`). Local moves
are renames within one file system; remote ones (``gs://``) go through Beam's file
systems.

An output folder may come from someone else, so recovery trusts nothing it finds: a
``_COMMIT`` marker may only name items a run owns (:func:`owned_item`), every path it
moves or deletes lies inside ``output.dir`` without passing through a link, and anything
else is refused (:class:`OutputLocationError`, exit status 2) before a byte is changed.

One run at a time per ``output.dir``: :class:`OutputLock` (a lock file created with
``O_EXCL``, holding the run's pid, host and start time) is held from before recovery to
after the swap; a lock left by a killed run on this host is taken over.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import socket
import uuid
from typing import Callable

from pipelines import filesystems

SCRATCH_PREFIX = ".oxe-augment-run-"
#: Where the report of a run that wrote nothing goes when publishing it would replace something.
UNPUBLISHED_PREFIX = "unpublished-"
LOCK_FILE = ".oxe-augment.lock"
_COMMIT = "_COMMIT"
_REPLACED = "_replaced"
#: What a run owns in output.dir besides its dataset folder (part.json: parts of a partitioned run only).
RUN_FILES = ("report.json", "report.html", "failures.jsonl", "previews", "part.json")
#: The dataset folder a run owns: ``<name>/<version>`` as the recipe allows them.
_DATASET_ITEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*/\d+\.\d+\.\d+")
#: Folders where nothing may be written.
_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


class OutputLocationError(ValueError):
    """``output.dir`` cannot be used; the message names the path and why."""


def check_output_location(output_root: str, input_dir: str) -> None:
    """Raise :class:`OutputLocationError` unless a run may write into ``output_root``.

    The output must not be, contain or lie inside the input dataset (after resolving
    links and ``..``): a run would otherwise write into, or replace, its own input.
    Locally it must be a folder (or creatable as one) that we can write, outside the
    kernel's virtual file systems. Nothing is created or changed.
    """
    out, inp = _canonical(output_root), _canonical(input_dir)
    if out == inp or _inside(inp, out) or _inside(out, inp):
        relation = "is" if out == inp else ("contains" if _inside(inp, out) else "lies inside")
        raise OutputLocationError(
            f"output.dir {output_root} {relation} the input dataset {input_dir}; inputs are read-only, "
            "choose an output folder outside the input"
        )
    if filesystems.is_remote(output_root):
        return
    for root in _SYSTEM_ROOTS:
        if _inside(out, root) or out == root:
            raise OutputLocationError(f"output.dir {output_root}: {root} is a system folder, not a place for datasets")
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputLocationError(f"output.dir {output_root} is a file, not a folder")
    existing = out
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputLocationError(f"output.dir {output_root}: {existing} is a file, so the folder cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputLocationError(f"output.dir {output_root}: {existing} is not writable")


def _canonical(path: str) -> str:
    if filesystems.is_remote(path):
        return path.rstrip("/")
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies strictly inside ``folder`` (both canonical)."""
    folder = folder.rstrip("/")
    return path.startswith(folder + "/")


def owned_item(item: object) -> bool:
    """Whether ``item`` is a name a run owns in ``output.dir``: a run file, or ``<name>/<version>``."""
    return isinstance(item, str) and (item in RUN_FILES or bool(_DATASET_ITEM.fullmatch(item)))


def existing_items(root: str, dataset: str) -> list[str]:
    """Which of a run's items (``dataset`` and the run files) already exist in ``root``."""
    return [item for item in (dataset, *RUN_FILES) if filesystems.exists(filesystems.join(root, item))]


def check_output_items(root: str, dataset: str, overwrite: bool) -> None:
    """Raise :class:`OutputLocationError` unless a run may publish ``dataset`` into ``root``.

    Without ``overwrite`` nothing that exists may be replaced: the dataset folder and every
    run file (``report.json``, ``previews/``, ...) must be absent. A link on the way to an
    item (``root/<name>`` pointing elsewhere) is refused, since the swap would move what
    lies outside ``root``. Leftovers of killed runs must be recoverable (:func:`read_manifest`).
    Reads only.
    """
    if not overwrite:
        existing = existing_items(root, dataset)
        if existing:
            raise OutputLocationError(
                f"output.dir {root}: already exists: {', '.join(existing)}; nothing was changed. "
                "Set output.overwrite: true to replace them, or choose another output.dir"
            )
    for item in (dataset, *RUN_FILES):
        _check_no_link(root, item)
    for scratch in _scratch_folders(root):
        marker = filesystems.join(scratch, _COMMIT)
        if filesystems.exists(marker):
            read_manifest(root, scratch)


def read_manifest(root: str, scratch: str) -> dict:
    """The ``_COMMIT`` manifest of a leftover scratch folder, checked before anything acts on it.

    The folder may come from anyone: its items must be names a run owns (no ``..``, no
    absolute path, nothing else in ``root``), and neither the scratch folder nor anything
    on the way to an item may be a link out of ``root``. Raises :class:`OutputLocationError`
    naming the scratch folder and the bad item.
    """
    where = filesystems.join(scratch, _COMMIT)
    refuse = (
        f"; nothing was changed. This is not what oxe-augment writes: check {scratch} "
        "and delete it by hand if nothing in it is needed"
    )
    if not filesystems.is_remote(root) and os.path.islink(scratch.rstrip("/")):
        raise OutputLocationError(f"output.dir {root}: the leftover run folder {scratch} is a link" + refuse)
    try:
        manifest = json.loads(filesystems.read_bytes(where))
    except (ValueError, UnicodeDecodeError) as e:
        raise OutputLocationError(f"{where}: not a commit marker ({e})" + refuse) from None
    items = manifest.get("items") if isinstance(manifest, dict) else None
    published = manifest.get("published") if isinstance(manifest, dict) else None
    if not isinstance(items, list) or not isinstance(published, list):
        raise OutputLocationError(f"{where}: not a commit marker (no list of items)" + refuse)
    for item in [*items, *published]:
        if not owned_item(item):
            raise OutputLocationError(
                f"{where}: item {str(item)[:200]!r} is not a name a run owns "
                f"(<name>/<version>, {', '.join(RUN_FILES)}); refusing to recover" + refuse
            )
    if sum(1 for item in items if item not in RUN_FILES) > 1 or not set(published) <= set(items):
        raise OutputLocationError(f"{where}: items {items} / published {published} are not one run's" + refuse)
    for item in items:
        _check_no_link(root, item)
        _check_no_link(scratch, item)
        _check_no_link(filesystems.join(scratch, _REPLACED), item)
    return manifest


@dataclasses.dataclass
class OutputTransaction:
    """One run's writes into ``root``: a scratch folder, swapped in by :meth:`commit`."""

    root: str  # output.dir
    dataset: str  # the dataset folder relative to root: "<name>/<version>"
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def scratch(self) -> str:
        """Where this run writes everything it will publish."""
        return filesystems.join(self.root, SCRATCH_PREFIX + self.run_id)

    def items(self) -> list[str]:
        """What the run publishes, relative to root: the dataset folder and the run files."""
        return [self.dataset, *RUN_FILES]

    def begin(self) -> None:
        """Finish or clean what killed runs left in ``root``, then create the scratch folder.

        Call it with the :class:`OutputLock` held: recovery deletes other runs' scratch folders.
        """
        self.recover()
        filesystems.make_folder(self.scratch)

    def replaces_a_dataset(self) -> bool:
        """Whether publishing would replace (or remove) a dataset folder that exists in ``root``."""
        return filesystems.exists(filesystems.join(self.root, self.dataset))

    def commit(self) -> None:
        """Publish the scratch folder's items, replacing the earlier ones together."""
        for item in self.items():
            _check_no_link(self.root, item)
        published = [item for item in self.items() if filesystems.exists(filesystems.join(self.scratch, item))]
        manifest = {"run_id": self.run_id, "items": self.items(), "published": published}
        # Written whole, then renamed: a marker is either absent or complete.
        marker = filesystems.join(self.scratch, _COMMIT)
        filesystems.write_bytes(marker + ".tmp", json.dumps(manifest).encode())
        filesystems.move(marker + ".tmp", marker)
        _swap_in(self.root, self.scratch, manifest)
        filesystems.delete_tree(self.scratch)

    def set_aside(self) -> str:
        """Keep the run's report files in a new ``root/unpublished-<time>-<id>/``, publish nothing.

        For a run that wrote no episode over an earlier output: the earlier output stays
        exactly as it was, and the run's ``report.json``, ``report.html``,
        ``failures.jsonl`` and ``previews/`` are kept beside it. Returns that folder.
        """
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        kept = filesystems.join(self.root, f"{UNPUBLISHED_PREFIX}{stamp}-{self.run_id}")
        filesystems.make_folder(kept)
        for item in RUN_FILES:
            new = filesystems.join(self.scratch, item)
            if filesystems.exists(new):
                filesystems.move(new, filesystems.join(kept, item))
        filesystems.delete_tree(self.scratch)
        return kept

    def abort(self) -> None:
        """Drop everything this run wrote; the earlier output stays as it was."""
        filesystems.delete_tree(self.scratch)

    def recover(self) -> None:
        """Complete committed runs that were cut short, delete the scratch of the others.

        A leftover's ``_COMMIT`` is checked first (:func:`read_manifest`): one naming
        anything but a run's own items raises :class:`OutputLocationError` and nothing is
        changed. Also removes the scratch names earlier versions of the tool used
        (``_work``) and TFDS's own half-written folders (``incomplete.*``) under the
        dataset's name.
        """
        scratches = _scratch_folders(self.root)
        manifests = {}
        for scratch in scratches:
            if filesystems.exists(filesystems.join(scratch, _COMMIT)):
                manifests[scratch] = read_manifest(self.root, scratch)  # every one checked before any acts
        for scratch in scratches:
            if scratch in manifests:
                _swap_in(self.root, scratch, manifests[scratch])
            filesystems.delete_tree(scratch)
        filesystems.delete_tree(filesystems.join(self.root, "_work"))
        name_folder = filesystems.join(self.root, self.dataset.split("/")[0])
        if not _is_link(name_folder):  # a link leads out of root: what it holds is not ours
            for leftover in filesystems.list_folders(name_folder):
                if os.path.basename(leftover.rstrip("/")).startswith("incomplete."):
                    filesystems.delete_tree(leftover)


def _scratch_folders(root: str) -> list[str]:
    if not filesystems.is_remote(root) and os.path.isdir(root):
        # Links too (list_folders follows them): read_manifest refuses a linked one.
        return sorted(
            os.path.join(root, name)
            for name in os.listdir(root)
            if name.startswith(SCRATCH_PREFIX) and os.path.isdir(os.path.join(root, name))
        )
    return [path for path in filesystems.list_folders(root) if os.path.basename(path.rstrip("/")).startswith(SCRATCH_PREFIX)]


def _swap_in(root: str, scratch: str, manifest: dict) -> None:
    """Move each earlier item aside into ``scratch/_replaced`` and the new one into ``root``.

    ``manifest`` lists every item a run owns and those it published (checked by
    :func:`read_manifest` when it comes from disk). Safe to run again after a crash
    part-way: a published item still in scratch has not been moved in yet (its earlier
    version, if any, is either still in root or already aside); one that is gone from
    scratch is in place. An item the run did not publish (no previews, say) only has its
    earlier version moved aside, so nothing stale is left beside the new run.
    """
    for item in manifest["items"]:
        new = filesystems.join(scratch, item)
        pending = item in manifest["published"] and filesystems.exists(new)
        if pending or item not in manifest["published"]:
            _move_if_exists(filesystems.join(root, item), filesystems.join(scratch, _REPLACED, item))
        if pending:
            filesystems.move(new, filesystems.join(root, item))


def _move_if_exists(source: str, destination: str) -> None:
    if filesystems.exists(source):
        filesystems.move(source, destination)


def _is_link(path: str) -> bool:
    return not filesystems.is_remote(path) and os.path.islink(path.rstrip("/"))


def _check_no_link(root: str, item: str) -> None:
    """Refuse when a folder on the way from ``root`` to ``root/item`` is a link.

    The item itself may be a link: moving or deleting it acts on the link, not on what
    it points to. A linked folder above it would make a move act outside ``root``.
    """
    if filesystems.is_remote(root):
        return  # object stores have no links
    parts = item.split("/")[:-1]
    path = root
    for part in parts:
        path = os.path.join(path, part)
        if os.path.islink(path):
            raise OutputLocationError(
                f"output.dir {root}: {path} is a link (to {os.readlink(path)}); a run only moves and deletes inside "
                "output.dir, so it refuses to work through it. Replace the link by a folder or choose another output.dir"
            )


# ---------------------------------------------------------------------------------------
# The lock


class OutputBusyError(OutputLocationError):
    """Another run holds ``output.dir``'s lock; the message names it."""


@dataclasses.dataclass
class OutputLock:
    """One run at a time per ``output.dir``: ``root/.oxe-augment.lock``, held from before
    recovery to after the swap.

    Locally the file is created with ``O_CREAT | O_EXCL`` (atomic, also on NFS v3+) and
    holds the holder's pid, host, process start and start time. A lock whose holder is on
    this host and no longer alive (a killed run) is taken over, and ``say`` is told so; a
    holder on another host cannot be checked, and the message says which file to delete
    once that run is known to be gone. On ``gs://`` there is no create-if-absent through
    Beam's file systems: the lock is best effort (checked, written, read back), so two
    runs started within the same second can both pass; a stale one is taken over only
    when it was this host's.
    """

    root: str
    say: Callable[[str], None] = print
    _held: bool = False

    @property
    def path(self) -> str:
        return filesystems.join(self.root, LOCK_FILE)

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputBusyError` naming its holder."""
        filesystems.make_folder(self.root)
        mine = _holder_record()
        for _ in range(5):
            if self._create(mine):
                self._held = True
                return
            text = self._read()
            if text is None:
                continue  # released between our create and read: try again
            holder = _parse_holder(text)
            if not _is_stale(holder):
                raise OutputBusyError(self._busy_message(holder))
            self.say(
                f"taking over the lock {self.path}: its run (pid {holder.get('pid')} on {holder.get('host')}, "
                f"started {holder.get('started')}) is no longer running"
            )
            self._take_over(text)
        raise OutputBusyError(f"output.dir {self.root}: could not take the lock {self.path}; another run keeps taking it")

    def release(self) -> None:
        """Give the lock back (only if we hold it, and only our own file)."""
        if not self._held:
            return
        self._held = False
        text = self._read()
        if text is not None and _parse_holder(text).get("token") == _TOKEN:
            _delete_file(self.path)

    def _create(self, record: dict) -> bool:
        data = json.dumps(record).encode()
        if filesystems.is_remote(self.path):
            if filesystems.exists(self.path):
                return False
            filesystems.write_bytes(self.path, data)
            text = self._read()  # read back: the last writer of two racing runs wins
            return text is not None and _parse_holder(text).get("token") == _TOKEN
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True

    def _read(self) -> str | None:
        """The lock file's text; ``None`` when there is none."""
        if filesystems.is_remote(self.path):
            return filesystems.read_bytes(self.path).decode("utf-8", "replace") if filesystems.exists(self.path) else None
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def _take_over(self, stale_text: str) -> None:
        """Remove the stale lock, unless another run replaced it meanwhile (then put that back)."""
        if filesystems.is_remote(self.path):
            _delete_file(self.path)
            return
        aside = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, aside)  # atomic: of two runs taking over, one moves this file
        except FileNotFoundError:
            return
        with open(aside, encoding="utf-8", errors="replace") as handle:
            moved = handle.read()
        if moved != stale_text:  # a live run's fresh lock: put it back where it was
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        os.remove(aside)

    def _busy_message(self, holder: dict) -> str:
        who = f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
        gone = (
            "wait for it to finish"
            if holder.get("host") == socket.gethostname()
            else f"wait for it to finish, or delete {self.path} once you know that run is gone"
        )
        return f"output.dir {self.root} is in use by another run ({who}; lock {self.path}): {gone}, or choose another output.dir"


_TOKEN = uuid.uuid4().hex  # this process's locks


def _delete_file(path: str) -> None:
    if filesystems.is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        FileSystems.delete([path])
    else:
        os.remove(path)


def _holder_record() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_start": _process_start(os.getpid()),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "token": _TOKEN,
    }


def _parse_holder(text: str) -> dict:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _is_stale(holder: dict) -> bool:
    """Whether the lock's holder is a process of this host that is gone (or was replaced by another of its pid)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False  # another host (or an unreadable lock): cannot tell, so it holds
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, someone else's
    start = _process_start(pid)
    return bool(start and holder.get("process_start") and start != holder.get("process_start"))


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid; "" elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""

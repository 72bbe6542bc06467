"""The output folder: checked before a run, written in a scratch folder, swapped in at the end.

A run never writes into ``output.dir`` directly. Everything it produces (the dataset
``<name>/<version>/``, ``report.json``, ``report.html``, ``failures.jsonl``,
``previews/``) goes into a scratch folder beside them, ``output.dir/.oxe-augment-run-<id>/``,
and only a run that finished is swapped in by :meth:`OutputTransaction.commit`:

1. a ``_COMMIT`` marker is written into the scratch folder (from here on the run is
   done; a crash is finished by the next run, not undone);
2. each earlier item is moved aside into the scratch folder, and the new one moved in;
3. the scratch folder, holding the earlier items, is deleted.

So a run killed at any point before step 1 leaves the earlier output exactly as it was
(and no dataset where TFDS would find one); a run killed during steps 2-3 is completed
by the next run into the same folder (:meth:`OutputTransaction.recover`). Local moves
are renames within one file system; remote ones (``gs://``) go through Beam's file
systems. One run at a time per ``output.dir``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid

from pipelines import filesystems

SCRATCH_PREFIX = ".oxe-augment-run-"
_COMMIT = "_COMMIT"
_REPLACED = "_replaced"
#: What a run owns in output.dir besides its dataset folder.
RUN_FILES = ("report.json", "report.html", "failures.jsonl", "previews")
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
        """Finish or clean what killed runs left in ``root``, then create the scratch folder."""
        self.recover()
        filesystems.make_folder(self.scratch)

    def commit(self) -> None:
        """Publish the scratch folder's items, replacing the earlier ones together."""
        published = [item for item in self.items() if filesystems.exists(filesystems.join(self.scratch, item))]
        manifest = {"run_id": self.run_id, "items": self.items(), "published": published}
        filesystems.write_bytes(filesystems.join(self.scratch, _COMMIT), json.dumps(manifest).encode())
        _swap_in(self.root, self.scratch, manifest)
        filesystems.delete_tree(self.scratch)

    def abort(self) -> None:
        """Drop everything this run wrote; the earlier output stays as it was."""
        filesystems.delete_tree(self.scratch)

    def recover(self) -> None:
        """Complete committed runs that were cut short, delete the scratch of the others.

        Also removes the scratch names earlier versions of the tool used (``_work``) and
        TFDS's own half-written folders (``incomplete.*``) under the dataset's name.
        """
        for scratch in _scratch_folders(self.root):
            marker = filesystems.join(scratch, _COMMIT)
            if filesystems.exists(marker):
                _swap_in(self.root, scratch, json.loads(filesystems.read_bytes(marker)))
            filesystems.delete_tree(scratch)
        filesystems.delete_tree(filesystems.join(self.root, "_work"))
        name_folder = filesystems.join(self.root, self.dataset.split("/")[0])
        for leftover in filesystems.list_folders(name_folder):
            if os.path.basename(leftover.rstrip("/")).startswith("incomplete."):
                filesystems.delete_tree(leftover)


def _scratch_folders(root: str) -> list[str]:
    return [path for path in filesystems.list_folders(root) if os.path.basename(path.rstrip("/")).startswith(SCRATCH_PREFIX)]


def _swap_in(root: str, scratch: str, manifest: dict) -> None:
    """Move each earlier item aside into ``scratch/_replaced`` and the new one into ``root``.

    ``manifest`` lists every item a run owns and those it published. Safe to run again
    after a crash part-way: a published item still in scratch has not been moved in yet
    (its earlier version, if any, is either still in root or already aside); one that is
    gone from scratch is in place. An item the run did not publish (no previews, say)
    only has its earlier version moved aside, so nothing stale is left beside the new run.
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

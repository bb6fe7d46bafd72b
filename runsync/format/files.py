"""Saved files (spec §13.5): a content-addressed object store and a per-stream index.

``files/sha256/<aa>/<sha256>`` holds each distinct content once (a person can
check it with ``sha256sum``); ``streams/<s>/files.json`` lists every save as
(name, sha256, size, mtime, time, policy), oldest first. A name saved again
(``policy="live"``) has several entries; readers take the latest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .version import FORMAT_VERSION

__all__ = ["FILES_DIR", "FileEntry", "FilesDoc", "object_path"]

FILES_DIR = "files"


def object_path(sha256: str) -> str:
    """Run-relative path of a saved file's bytes."""
    return f"{FILES_DIR}/sha256/{sha256[:2]}/{sha256}"


@dataclass
class FileEntry:
    name: str  # run-relative-path syntax (§12.2), relative to the save root
    sha256: str
    size: int
    mtime: float  # the source file's modification time when copied
    time: float  # when it was saved
    policy: str  # now | end | live


@dataclass
class FilesDoc:
    files: list[FileEntry] = field(default_factory=list)
    format: str = FORMAT_VERSION

    def __post_init__(self) -> None:
        names = set(FileEntry.__dataclass_fields__)
        self.files = [e if isinstance(e, FileEntry) else FileEntry(**{k: v for k, v in e.items() if k in names})
                      for e in self.files]

    def latest(self) -> dict[str, FileEntry]:
        """Name → its most recent save."""
        out: dict[str, FileEntry] = {}
        for e in self.files:
            if e.name not in out or e.time >= out[e.name].time:
                out[e.name] = e
        return out

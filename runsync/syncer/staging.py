"""The staging area of a remote (spec §12.3, since 1.3): where a run's tabular files wait for the commit.

Files under a run's ``history/``, ``system/`` and ``media/`` are what stock readers read, so a pusher
sends them to ``.runsync/staging/<run id>/<sha256>`` first, moves them to their run paths just before
the manifest is written, and after the commit removes whatever those paths hold that the committed
manifest does not name (a killed or failed push's files), and the run's staging leftovers.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..format.manifest import is_tabular, staging_dir, staging_path
from .errors import RemoteError
from .remote import Remote

__all__ = ["StagedGone", "place", "remove_unlisted"]


class StagedGone(Exception):
    """A staged object was gone when it was to be moved into place (a concurrent pusher of the run
    committed and cleaned up): the run is pushed again."""


def place(remote: Remote, run_id: str, sha: str, rels: list[str]) -> None:
    """Move the staged object ``sha`` of ``run_id`` to its run path(s): identical files under several
    names get copies, then the move. Raises StagedGone if the staged object is not there."""
    src = staging_path(run_id, sha)
    try:
        for rel in rels[1:]:
            remote.copy(src, f"{run_id}/{rel}")
        remote.move(src, f"{run_id}/{rels[0]}")
    except RemoteError:
        if remote.size(src) is None:
            raise StagedGone(f"{src} on {remote.display}") from None
        raise


def remove_unlisted(remote: Remote, run_id: str, committed: Iterable[str], also: Iterable[str] = (),
                    staged: dict[str, int] | None = None, moved: Iterable[str] = ()) -> None:
    """After the commit of ``committed`` (run-relative paths): remove every file under the run's tabular
    paths it does not name, and the run's staging objects except those ``moved`` into place (gone
    already). ``also``: paths an earlier manifest named (their tables are listed too); ``staged``: the
    staging listing taken before sending, if any (saves listing it again)."""
    names = set(committed)
    dirs = {"history"} | {rel.split("/", 1)[0] for rel in names | set(also) if is_tabular(rel)}
    for d in sorted(dirs):
        for name in remote.files(f"{run_id}/{d}"):
            if f"{d}/{name}" not in names:
                remote.remove(f"{run_id}/{d}/{name}")
    left = staged if staged is not None else remote.files(staging_dir(run_id))
    gone = set(moved)
    for name in left:
        if name not in gone:
            remote.remove(f"{staging_dir(run_id)}/{name}")

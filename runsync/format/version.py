"""Format version and the compatibility rule (spec §1.2)."""

from __future__ import annotations

from pathlib import Path

from .errors import UnsupportedVersionError

__all__ = ["FORMAT_VERSION", "FORMAT_MAJOR", "FORMAT_MINOR", "check_version"]

FORMAT_MAJOR = 1
FORMAT_MINOR = 2
FORMAT_VERSION = f"{FORMAT_MAJOR}.{FORMAT_MINOR}"


def check_version(version: object, path: str | Path | None = None) -> tuple[int, int]:
    """Parse a "MAJOR.MINOR" string; reject an unknown major version (spec §1.2).

    A newer minor version is accepted: minor versions only add fields, files or
    type codes that older readers ignore.
    """
    try:
        major_s, minor_s = str(version).split(".", 1)
        major, minor = int(major_s), int(minor_s)
    except (ValueError, TypeError):
        raise UnsupportedVersionError(f"unreadable format version {version!r}", path) from None
    if major != FORMAT_MAJOR:
        raise UnsupportedVersionError(
            f"written by runsync format {major}.{minor}; this runsync reads format "
            f"{FORMAT_MAJOR}.x — install a runsync release that supports format {major}",
            path,
        )
    return major, minor

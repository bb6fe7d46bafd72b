"""Format version and the compatibility rule (spec §1.2)."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UnsupportedVersionError

__all__ = ["FORMAT_VERSION", "FORMAT_MAJOR", "FORMAT_MINOR", "check_version"]

FORMAT_MAJOR = 1
FORMAT_MINOR = 3
FORMAT_VERSION = f"{FORMAT_MAJOR}.{FORMAT_MINOR}"

# ASCII digits only (spec §1.4): `\d` would also match other scripts' digits, and int()
# would accept surrounding blanks, `+`, `_` separators and non-ASCII digits.
_VERSION = re.compile(r"([0-9]+)\.([0-9]+)", re.ASCII)


def check_version(version: object, path: str | Path | None = None) -> tuple[int, int]:
    """Parse a "MAJOR.MINOR" string; reject an unknown major version (spec §1.2).

    A newer minor version is accepted: minor versions only add fields, files or
    type codes that older readers ignore.
    """
    m = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if m is None:
        # readers MUST NOT guess (§1.2): a JSON number 1.2, " 1.2", "1.0_0", "+1.2", "1.٢"
        raise UnsupportedVersionError(
            f"unreadable format version {version!r} (expected a string \"MAJOR.MINOR\" of ASCII digits, "
            f"such as \"{FORMAT_VERSION}\"; this runsync reads format {FORMAT_MAJOR}.x)",
            path,
        )
    major, minor = int(m.group(1)), int(m.group(2))
    if major != FORMAT_MAJOR:
        raise UnsupportedVersionError(
            f"written by runsync format {major}.{minor}; this runsync reads format "
            f"{FORMAT_MAJOR}.x — install a runsync release that supports format {major}",
            path,
        )
    return major, minor

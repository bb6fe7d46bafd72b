from __future__ import annotations

import os
from pathlib import Path

import pytest

import runsync

FAST = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5, segment_size=1 << 20)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run silent and never inherit a user's runsync environment."""
    for var in ("RUNSYNC_MODE", "RUNSYNC_DIR", "RUNSYNC_PROJECT", "RUNSYNC_STREAM", "RUNSYNC_WAL_DIR", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RUNSYNC_SILENT", "1")
    # Sidecars that watch the whole process are tested on their own (test_system*, test_console*).
    monkeypatch.setenv("RUNSYNC_SYSTEM", "off")
    monkeypatch.setenv("RUNSYNC_CONSOLE", "off")
    monkeypatch.setenv("RUNSYNC_ENVIRONMENT", "off")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    return d


@pytest.fixture
def fast() -> runsync.Settings:
    return FAST


def part_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "history").glob("*.parquet"))


def env_without_runsync() -> dict[str, str]:
    """The environment for a child writer: no user runsync settings, and no process-wide sidecars
    (system metrics, console capture, environment record), which have their own tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSYNC_")}
    env.update(RUNSYNC_SYSTEM="off", RUNSYNC_CONSOLE="off", RUNSYNC_ENVIRONMENT="off")
    return env

"""Sync messages a person can act on (issue 13 §2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import runsync


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSYNC_")}
    return subprocess.run([sys.executable, "-m", "runsync", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for _ in range(3):
        run = runsync.init(dir=tmp_path / "runs")
        run.log({"a": 1.0})
        run.finish()
    return tmp_path


def test_status_knows_the_remote_however_it_is_spelled(tree: Path) -> None:
    assert _cli("push", "runs", "remote", "-q", cwd=tree).returncode == 0
    for spelling in ("remote", "./remote", "remote/", str(tree / "remote"), f"file://{tree / 'remote'}"):
        r = _cli("status", "runs", spelling, cwd=tree)
        assert r.returncode == 0, r.stderr
        assert "never pushed" not in r.stdout, (spelling, r.stdout)
        assert r.stdout.count("up to date") == 3, (spelling, r.stdout)
    # and a push under another spelling is a no-op push, not a re-hash of everything
    r = _cli("push", "runs", f"file://{tree / 'remote'}/", cwd=tree)
    assert "3 runs (0 updated, 3 unchanged)" in r.stdout, r.stdout


def test_a_no_op_push_off_a_terminal_prints_only_the_summary(tree: Path) -> None:
    assert _cli("push", "runs", "remote", "-q", cwd=tree).returncode == 0
    r = _cli("push", "runs", "remote", cwd=tree)
    assert r.returncode == 0
    assert "unchanged" not in r.stderr, r.stderr  # no line per unchanged run
    assert r.stdout.startswith("3 runs (0 updated, 3 unchanged)")


def test_the_summary_counts_failed_runs(tree: Path) -> None:
    bad = tree / "runs" / "broken1"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    r = _cli("push", "runs", "remote", cwd=tree)
    assert r.returncode == 1
    assert "4 runs (3 updated, 0 unchanged, 1 failed)" in r.stdout, r.stdout
    assert "FAILED broken1" in r.stderr


def test_show_latest_without_a_runs_directory_says_so(tmp_path: Path) -> None:
    r = _cli("show", "latest", cwd=tmp_path)
    assert r.returncode == 1
    assert "there is no runs directory" in r.stderr and "--dir" in r.stderr and "RUNSYNC_DIR" in r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "runs").mkdir()
    r = _cli("show", "latest", cwd=tmp_path)
    assert r.returncode == 1 and "no runs under" in r.stderr


def test_s3_without_credentials_fails_at_once_saying_how_to_give_them(tree: Path) -> None:
    pytest.importorskip("s3fs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSYNC_", "AWS_"))}
    env["HOME"] = str(tree)  # no ~/.aws
    r = subprocess.run([sys.executable, "-m", "runsync", "push", "runs", "s3://nobucket/x"], capture_output=True,
                       text=True, cwd=tree, env=env, timeout=120)
    assert r.returncode == 1
    err = r.stderr
    assert "no AWS credentials found" in err and "AWS_ACCESS_KEY_ID" in err and "AWS_PROFILE" in err
    assert "-o key=" in err and "Traceback" not in err and "NoCredentialsError" not in err
    assert not (tree / "runs" / ".runsync").exists() or "nobucket" not in str(list((tree / "runs").rglob("*")))


def test_a_wrong_endpoint_is_named_and_given_up_on(tree: Path) -> None:
    """Nothing listens on 127.0.0.1:9: retry lines name the endpoint and the time left; the error says it was
    never reached and what to check (issue 13 §2)."""
    pytest.importorskip("s3fs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSYNC_", "AWS_"))}
    env.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_DEFAULT_REGION="us-east-1", HOME=str(tree))
    r = subprocess.run([sys.executable, "-m", "runsync", "push", "runs", "s3://bucket/x", "--retries", "2",
                        "-o", "client_kwargs.endpoint_url=http://127.0.0.1:9", "-o", "config_kwargs.retries.max_attempts=1"],
                       capture_output=True, text=True, cwd=tree, env=env, timeout=300)
    assert r.returncode == 1
    err = r.stderr
    assert "reaching http://127.0.0.1:9" in err and "gives up in" in err, err
    assert "never reached http://127.0.0.1:9" in err and "check the host and port" in err, err
    assert "Traceback" not in err


def test_a_local_path_that_cannot_be_written_gets_local_advice(tree: Path) -> None:
    r = _cli("push", "runs", "/proc/forbidden/remote", cwd=tree)
    assert r.returncode == 1
    assert "this is a local path" in r.stderr and "credentials" not in r.stderr, r.stderr
    assert "Traceback" not in r.stderr

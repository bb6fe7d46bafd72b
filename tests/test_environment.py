"""Code and environment capture (runsync.writer.environment) and ``runsync restore`` (runsync.reader.code).

Every repository here is a real temporary git repository; its remote carries a token in the URL and is
never contacted (example.invalid).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

import runsync
from runsync.cli import restore as restore_cli
from runsync.format.errors import FormatError
from runsync.reader.code import describe, load_environment, restore
from runsync.writer import git_state
from runsync.writer.environment import (
    REDACTED,
    collect,
    redact_argv,
    scheduler_context,
    secret_name,
    strip_url_credentials,
    write_environment,
)

REMOTE = "https://user:SECRETTOKEN@example.invalid/x.git"
SECRETS = ("SECRETTOKEN", "SECRET123", "SECRET456", "SECRET789", "SECRETAWS0123456789", "SECRETDBPW",
           "SECRETENVFILE", "ghp_abcdefghijklmnopqrstuvwxyz0123456789")
ARGV = ["train.py", "--lr", "0.1", "--api-key", "SECRET456", "--password=SECRET789", "--epochs", "3"]


@pytest.fixture(autouse=True)
def _hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git configuration; no scheduler variables from the machine running the tests."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in list(os.environ):
        if var.startswith(("SLURM_", "PBS_", "LSB_", "OMPI_", "PMI")) or var in (
                "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK", "NODE_RANK"):
            monkeypatch.delenv(var, raising=False)


def git(cwd: Path, *args: str) -> str:
    r = subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=T", *args], cwd=cwd,
                       capture_output=True, check=True, timeout=30)
    return r.stdout.decode().strip()


def make_repo(base: Path) -> Path:
    """A repository with two commits, a remote with a token in its URL, and uncommitted changes of every kind."""
    repo = base / "repo"
    repo.mkdir()
    git(repo, "-c", "init.defaultBranch=main", "init", "-q")
    git(repo, "symbolic-ref", "HEAD", "refs/heads/main")
    (repo / "train.py").write_text("lr = 0.1\nprint('train')\n")
    (repo / "model.py").write_text("class Model:\n    pass\n")
    (repo / "gone.py").write_text("x = 1\n")
    (repo / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (repo / ".gitignore").write_text("ignored/\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "train.py").write_text("lr = 0.1\nprint('train')\nprint('v2')\n")
    git(repo, "commit", "-q", "-am", "second")
    git(repo, "remote", "add", "origin", REMOTE)
    # uncommitted: modified, staged new file, deleted, binary change, untracked text (odd names), ignored
    (repo / "train.py").write_text("lr = 0.3  # tuned\nprint('train')\nprint('v2')\n")
    (repo / "staged.py").write_text("staged = True\n")
    git(repo, "add", "staged.py")
    (repo / "gone.py").unlink()
    (repo / "weights.bin").write_bytes(bytes(range(255, -1, -1)) * 4)
    (repo / "new_module.py").write_text("def helper():\n    return 42")  # no final newline
    (repo / "sub dir").mkdir()
    (repo / "sub dir" / "données é.txt").write_text("unicode ✓\n")
    run_sh = repo / "run.sh"
    run_sh.write_text("#!/bin/sh\necho hi\n")
    run_sh.chmod(0o755)
    (repo / "ignored").mkdir()
    (repo / "ignored" / "big.txt").write_text("not recorded\n")
    return repo


def tree(d: Path) -> dict[str, tuple[bytes, bool]]:
    """Working tree files (not .git, not ignored ones) → (content, executable)."""
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d).as_posix()
        if rel == ".git" or rel.startswith((".git/", "ignored/")) or p.is_dir():
            continue
        out[rel] = (p.read_bytes(), bool(p.stat().st_mode & stat.S_IXUSR))
    return out


def fake_run(base: Path, name: str = "r1") -> Path:
    """A run directory with just enough for load_environment/restore: run.json and streams/main/."""
    run_dir = base / name
    (run_dir / "streams" / "main").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"format": "1.1", "id": name, "name": name}))
    return run_dir


def grep_secrets(d: Path) -> list[tuple[str, str]]:
    hits = []
    for p in d.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            hits += [(str(p), s) for s in SECRETS if s.encode() in data]
    return hits


# -- capture ---------------------------------------------------------------------------------------------------


def test_collect_records_git_state(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    doc, patch = collect(disable_code=False, cwd=str(repo), argv=ARGV)
    g = doc["git"]
    assert doc["code"] == "recorded" and doc["code_reason"] is None and doc["format"] == runsync.FORMAT_VERSION == "1.3"
    assert g["commit"] == git(repo, "rev-parse", "HEAD") and len(g["commit"]) == 40
    assert g["branch"] == "main" and g["dirty"] is True and g["root"] == str(repo.resolve())
    assert g["remote"] == "origin" and g["remote_url"] == "https://example.invalid/x.git"
    assert g["untracked_files"] == 3 and g["untracked_in_patch"] == 3 and g["omitted"] == []
    assert patch is not None
    for piece in (b"lr = 0.3", b"staged = True", b"deleted file mode", b"GIT binary patch", b"def helper",
                  b"\\ No newline at end of file", b"new file mode 100755"):
        assert piece in patch
    assert b"not recorded" not in patch  # ignored files stay out
    assert doc["command"]["argv"] == ["train.py", "--lr", "0.1", "--api-key", REDACTED, f"--password={REDACTED}",
                                      "--epochs", "3"]
    assert doc["python"]["version"].count(".") == 2 and "pytest" in doc["python"]["packages"]
    assert list(doc["python"]["packages"]) == sorted(doc["python"]["packages"])
    host = doc["host"]
    assert host["hostname"] and host["cpu_count"] and isinstance(host["gpus"], list)
    assert doc["errors"] == []


def test_clean_tree_detached_head_no_patch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "all")
    git(repo, "checkout", "-q", "--detach", "HEAD")
    doc, patch = collect(disable_code=False, cwd=str(repo), argv=["x"])
    assert doc["git"]["branch"] is None and doc["git"]["dirty"] is False and patch is None
    stream = fake_run(tmp_path)
    write_environment(stream / "streams" / "main", 0, disable_code=False, cwd=str(repo), argv=["x"])
    assert sorted(p.name for p in (stream / "streams" / "main").iterdir()) == ["environment.000000.json"]


def test_disable_code_records_no_git_and_no_patch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    run_dir = fake_run(tmp_path)
    sdir = run_dir / "streams" / "main"
    write_environment(sdir, 0, disable_code=True, cwd=str(repo), argv=ARGV)
    assert [p.name for p in sdir.iterdir()] == ["environment.000000.json"]
    doc = json.loads((sdir / "environment.000000.json").read_text())
    assert doc["git"] is None and doc["code"] == "disabled"
    assert "example.invalid" not in (sdir / "environment.000000.json").read_text()
    with pytest.raises(FormatError, match="recorded no code state.*RUNSYNC_DISABLE_CODE"):
        restore(run_dir, tmp_path / "dest")


def test_outside_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    doc, patch = collect(disable_code=False, cwd=str(plain), argv=["x"])
    assert doc["git"] is None and patch is None
    assert doc["code"] == "unavailable" and doc["code_reason"] == "not a git repository"


def test_repository_without_commits(tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("a = 1\n")
    doc, patch = collect(disable_code=False, cwd=str(repo), argv=["x"])
    assert doc["git"]["commit"] is None and patch is None and doc["code"] == "recorded"
    assert any("no commits" in e for e in doc["errors"])


# -- secrets ---------------------------------------------------------------------------------------------------


def test_secrets_never_reach_run_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)
    monkeypatch.setenv("MY_API_TOKEN", "SECRET123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRETAWS0123456789")
    monkeypatch.setenv("DATABASE_URL", "postgres://app:SECRETDBPW@db.invalid/prod")
    monkeypatch.setenv("SLURM_JOB_NAME", "sweep token=SECRET123")  # allowlisted variable, secret-looking text
    (repo / ".env").write_text("TOKEN=SECRETENVFILE\n")  # untracked, secret-looking name
    (repo / "notes.py").write_text("# the key is SECRET123\n")  # untracked, holds an environment secret
    (repo / "model.py").write_text("KEY = 'ghp_abcdefghijklmnopqrstuvwxyz0123456789'\n")  # tracked, token format
    run_dir = fake_run(tmp_path)
    argv = ARGV + ["--db", "postgres://app:SECRETDBPW@db.invalid/prod", "MY_API_TOKEN=SECRET123"]
    errors: list[str] = []
    write_environment(run_dir / "streams" / "main", 0, disable_code=False, cwd=str(repo), argv=argv,
                      on_error=errors.append)
    assert errors == []
    assert grep_secrets(run_dir) == []
    doc, patch = load_environment(run_dir)
    assert patch is not None and b"lr = 0.3" in patch.read_bytes()  # the rest of the patch is still there
    omitted = {o["path"]: o["reason"] for o in doc["git"]["omitted"]}
    assert omitted == {".env": "secret-looking file name", "notes.py": "contains a secret-looking value",
                       "model.py": "contains a secret-looking value"}
    assert doc["command"]["argv"][-3:] == ["--db", "postgres://db.invalid/prod", f"MY_API_TOKEN={REDACTED}"]
    assert doc["scheduler"]["slurm"]["job_name"] == f"sweep token={REDACTED}"
    text = json.dumps(doc)
    for name in ("MY_API_TOKEN\"", "AWS_SECRET_ACCESS_KEY", "DATABASE_URL"):
        assert name not in text  # the environment is never captured wholesale


@pytest.mark.parametrize(("argv", "expected"), [
    (["t.py", "--api-key", "X1"], ["t.py", "--api-key", REDACTED]),
    (["t.py", "--api-key=X1"], ["t.py", f"--api-key={REDACTED}"]),
    (["t.py", "--token", "X1", "--lr", "1"], ["t.py", "--token", REDACTED, "--lr", "1"]),
    (["t.py", "--hf_token", "X1", "--wandbApiKey", "X2"], ["t.py", "--hf_token", REDACTED, "--wandbApiKey", REDACTED]),
    (["t.py", "-password", "X1", "--db-passwd=X2"], ["t.py", "-password", REDACTED, f"--db-passwd={REDACTED}"]),
    (["t.py", "--client-secret", "X1", "--session", "X2"], ["t.py", "--client-secret", REDACTED, "--session", REDACTED]),
    (["t.py", "+wandb.api_key=X1", "db.password=X2", "lr=0.1"],
     ["t.py", f"+wandb.api_key={REDACTED}", f"db.password={REDACTED}", "lr=0.1"]),
    (["t.py", "--set", "AWS_SECRET_ACCESS_KEY=X1"], ["t.py", "--set", f"AWS_SECRET_ACCESS_KEY={REDACTED}"]),
    (["t.py", "--token", "--verbose"], ["t.py", "--token", "--verbose"]),  # a flag, no value to redact
    (["t.py", "--max-tokens", "512", "--tokenizer", "bert", "--num-key-value-heads", "8", "--keep", "3"],
     ["t.py", "--max-tokens", "512", "--tokenizer", "bert", "--num-key-value-heads", "8", "--keep", "3"]),
    (["t.py", "--data", "https://u:pw@h.invalid/d?sig=abc&x=1"], ["t.py", "--data", f"https://h.invalid/d?sig={REDACTED}&x=1"]),
    (["t.py", "--cfg", '{"api_key": "X1", "lr": 1}'], ["t.py", "--cfg", f'{{"api_key": "{REDACTED}", "lr": 1}}']),
    (["t.py", "--note", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"], ["t.py", "--note", REDACTED]),
    (["t.py", "-1", "--x=-3"], ["t.py", "-1", "--x=-3"]),
    # the mysql/psql short password option (issue 10 item 8), separate and attached
    (["t.py", "-p", "SECRETVALUE", "--lr", "1"], ["t.py", "-p", REDACTED, "--lr", "1"]),
    (["t.py", "-pSECRETVALUE"], ["t.py", f"-p{REDACTED}"]),
    (["t.py", "-p=SECRETVALUE"], ["t.py", f"-p{REDACTED}"]),
    (["t.py", "-p", "--verbose"], ["t.py", "-p", "--verbose"]),  # a flag, no value to redact
    (["t.py", "--port", "8080", "--profile", "x"], ["t.py", "--port", "8080", "--profile", "x"]),
])
def test_redact_argv(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


def test_secret_names_and_urls() -> None:
    for name in ("api_key", "API-KEY", "apiKey", "hf_token", "GITHUB_TOKEN", "password", "PGPASSWORD", "db_pwd",
                 "client_secret", "aws_secret_access_key", "auth", "cookie", "session", "private_key_pem"):
        assert secret_name(name), name
    for name in ("max_tokens", "tokenizer", "num_key_value_heads", "keep", "monkey", "author", "lr", "key_dim"):
        assert not secret_name(name), name
    assert strip_url_credentials(REMOTE) == "https://example.invalid/x.git"
    assert strip_url_credentials("https://ghp_TOKEN@github.com/o/r.git") == "https://github.com/o/r.git"
    assert strip_url_credentials("ssh://user:pass@h/x") == "ssh://h/x"
    assert strip_url_credentials("ssh://git@h/x.git") == "ssh://git@h/x.git"
    assert strip_url_credentials("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
    assert strip_url_credentials("see https://a:b@x.invalid/1 and http://c@y.invalid/") == \
        "see https://x.invalid/1 and http://y.invalid/"


def test_scheduler_context_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"SLURM_JOB_ID": "4242", "SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2",
                 "SLURM_NODELIST": "gpu[01-04]", "SLURM_PROCID": "5", "SLURM_JOB_USER": "alice",
                 "RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "16", "MASTER_ADDR": "gpu01", "MASTER_PORT": "29500",
                 "CUDA_VISIBLE_DEVICES": "0,1", "LSB_JOBID": "77", "LSB_JOBINDEX": "3"}.items():
        monkeypatch.setenv(k, v)
    ctx = scheduler_context()
    assert ctx["slurm"] == {"job_id": "4242", "array_job_id": "4240", "array_task_id": "2", "nodelist": "gpu[01-04]",
                            "procid": "5"}
    assert ctx["torch"] == {"rank": 5, "local_rank": 1, "world_size": 16, "master_addr": "gpu01",
                            "master_port": "29500"}
    assert ctx["lsf"] == {"job_id": "77", "job_index": "3"} and ctx["devices"] == {"cuda_visible_devices": "0,1"}
    assert "pbs" not in ctx and "mpi" not in ctx
    doc, _ = collect(disable_code=True, argv=["x"])
    assert doc["scheduler"] == ctx and "alice" not in json.dumps(doc)
    monkeypatch.setenv("PBS_JOBID", "9.server")
    monkeypatch.setenv("PBS_ARRAY_INDEX", "4")
    assert scheduler_context()["pbs"] == {"job_id": "9.server", "array_index": "4"}


# -- limits, robustness ----------------------------------------------------------------------------------------


def test_untracked_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)
    (repo / "data.bin").write_bytes(b"\0\1\2" * 10)
    (repo / "huge.txt").write_text("x" * (git_state.UNTRACKED_FILE_MAX + 1))
    monkeypatch.setattr(git_state, "UNTRACKED_MAX_FILES", 2)
    doc, patch = collect(disable_code=False, cwd=str(repo), argv=["x"])
    reasons = {o["path"]: o["reason"] for o in doc["git"]["omitted"]}
    assert reasons["data.bin"] == "untracked binary file"
    assert reasons["huge.txt"].startswith("untracked file larger than")
    assert sum("over the limit" in r for r in reasons.values()) == 1  # 3 text files, room for 2
    assert doc["git"]["untracked_in_patch"] == 2 and doc["git"]["untracked_files"] == 5
    assert patch is not None and b"huge.txt" not in patch and b"data.bin" not in patch


def test_untracked_examined_at_most(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)
    monkeypatch.setattr(git_state, "UNTRACKED_EXAMINE_MAX", 1)
    doc, _ = collect(disable_code=False, cwd=str(repo), argv=["x"])
    assert doc["git"]["untracked_in_patch"] == 1
    assert [o["reason"].startswith("not examined") for o in doc["git"]["omitted"]] == [True, True]


def test_submodule_change_is_listed_not_patched(tmp_path: Path) -> None:
    lib = make_repo(tmp_path)
    git(lib, "add", "-A")
    git(lib, "commit", "-q", "-m", "lib")
    top = tmp_path / "top"
    top.mkdir()
    git(top, "init", "-q")
    (top / "a.py").write_text("a = 1\n")
    git(top, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(top, "commit", "-q", "-am", "top")
    (lib / "train.py").write_text("changed\n")
    git(lib, "commit", "-q", "-am", "lib 2")
    git(top / "lib", "-c", "protocol.file.allow=always", "pull", "-q")
    (top / "a.py").write_text("a = 2\n")
    doc, patch = collect(disable_code=False, cwd=str(top), argv=["x"])
    assert {o["path"]: o["reason"] for o in doc["git"]["omitted"]} == {
        "lib": "submodule commit change (git apply cannot restore it)"}
    assert patch is not None and b"a = 2" in patch and b"Subproject" not in patch


def test_write_environment_never_raises(tmp_path: Path) -> None:
    errors: list[str] = []
    write_environment(tmp_path / "missing" / "dir", 0, disable_code=True, argv=["x"], on_error=errors.append)
    assert len(errors) == 1 and "could not record" in errors[0]
    write_environment(tmp_path / "missing" / "dir", 0, disable_code=True, argv=["x"])  # and without a callback


def test_git_missing_or_slow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)
    with monkeypatch.context() as m:
        m.setenv("PATH", str(tmp_path / "nowhere"))
        doc, patch = collect(disable_code=False, cwd=str(repo), argv=["x"])
    assert doc["git"] is None and doc["code_reason"] == "git not found" and patch is None
    monkeypatch.setattr(git_state, "GIT_BUDGET", 0.0)
    doc, patch = collect(disable_code=False, cwd=str(repo), argv=["x"])
    assert doc["git"] is None and "longer than" in doc["code_reason"] and patch is None


def test_capture_opens_no_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("network use during capture")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    doc, patch = collect(disable_code=False, cwd=str(repo), argv=["x"])
    assert doc["errors"] == [] and patch is not None


def test_gpu_inventory_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspect

    import runsync.writer.environment as environment

    # one NVML inventory (issue 14): the environment record reads system.gpu_inventory, no NVML code of its own
    assert "pynvml" not in inspect.getsource(environment)
    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    fake.nvmlSystemGetDriverVersion = lambda: b"550.54"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda h: "NVIDIA A100-SXM4-80GB"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 << 30)  # type: ignore[attr-defined]
    fake.nvmlDeviceGetUUID = lambda h: f"GPU-{h}"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    doc, _ = collect(disable_code=True, argv=["x"])
    assert doc["host"]["gpus"] == [
        {"index": i, "name": "NVIDIA A100-SXM4-80GB", "memory_bytes": 80 << 30, "uuid": f"GPU-{i}",
         "driver": "550.54"} for i in range(2)]
    assert any("2× NVIDIA A100" in text for _, text in describe(doc))


# -- restore ---------------------------------------------------------------------------------------------------


def test_restore_reproduces_the_working_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)
    expected = tree(repo)
    run_dir = fake_run(tmp_path)
    write_environment(run_dir / "streams" / "main", 0, disable_code=False, cwd=str(repo), argv=ARGV)
    monkeypatch.chdir(tmp_path)
    res = restore(run_dir, None)
    assert res.dest == tmp_path / "r1-code" and res.applied and res.apply_error is None
    assert res.repo == repo.resolve() and res.commit == git(repo, "rev-parse", "HEAD") and res.branch == "main"
    assert tree(res.dest) == expected
    assert git(res.dest, "rev-parse", "HEAD") == res.commit
    with pytest.raises(runsync.RunsyncError, match="not empty"):
        restore(run_dir, res.dest)


def test_restore_into_empty_dir_with_explicit_repo(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    expected = tree(repo)
    run_dir = fake_run(tmp_path)
    write_environment(run_dir / "streams" / "main", 0, disable_code=False, cwd=str(repo), argv=ARGV)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    dest = tmp_path / "empty"
    dest.mkdir()
    res = restore(run_dir, dest, repo=clone)
    assert res.repo == clone.resolve() and tree(dest) == expected


def test_restore_without_the_repository_gives_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path)
    commit = git(repo, "rev-parse", "HEAD")
    run_dir = fake_run(tmp_path)
    write_environment(run_dir / "streams" / "main", 0, disable_code=False, cwd=str(repo), argv=ARGV)
    repo.rename(tmp_path / "moved")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(FormatError) as info:
        restore(run_dir, None)
    msg = str(info.value)
    patch = run_dir / "streams" / "main" / "diff.000000.patch"
    assert commit in msg and "branch main" in msg
    assert (f"git clone https://example.invalid/x.git r1-code && cd r1-code && git checkout {commit} && "
            f"git apply {patch.resolve()}") in msg
    assert "SECRETTOKEN" not in msg and not (elsewhere / "r1-code").exists()
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    with pytest.raises(FormatError, match=f"{commit}.*looked in: {other}"):
        restore(run_dir, None, repo=other)


def test_restore_reports_a_patch_that_does_not_apply(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    run_dir = fake_run(tmp_path)
    write_environment(run_dir / "streams" / "main", 0, disable_code=False, cwd=str(repo), argv=ARGV)
    patch = run_dir / "streams" / "main" / "diff.000000.patch"
    patch.write_bytes(patch.read_bytes().replace(b" print('train')", b" print('nope')"))
    res = restore(run_dir, tmp_path / "dest")
    assert not res.applied and res.apply_error
    assert (tmp_path / "dest" / "train.py").read_text() == "lr = 0.1\nprint('train')\nprint('v2')\n"


def test_load_environment_picks_stream_and_latest_incarnation(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    run_dir = fake_run(tmp_path)
    with pytest.raises(FormatError, match="no environment record"):
        load_environment(run_dir)
    (run_dir / "streams" / "rank1").mkdir()
    write_environment(run_dir / "streams" / "rank1", 0, disable_code=True, argv=["rank1"])
    assert load_environment(run_dir)[0]["stream"] == "rank1"  # no main record: the first stream that has one
    write_environment(run_dir / "streams" / "main", 0, disable_code=True, argv=["old"])
    write_environment(run_dir / "streams" / "main", 1, disable_code=False, cwd=str(repo), argv=["new"])
    doc, patch = load_environment(run_dir)
    assert doc["stream"] == "main" and doc["incarnation"] == 1 and doc["command"]["argv"] == ["new"]
    assert patch == run_dir / "streams" / "main" / "diff.000001.patch"
    assert load_environment(run_dir, "rank1")[1] is None
    (run_dir / "streams" / "main" / "environment.000002.json").write_text('{"format": "2.0"}')
    with pytest.raises(FormatError, match="format 2"):
        load_environment(run_dir)


def test_real_run_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                          fast: runsync.Settings) -> None:
    repo = make_repo(tmp_path)
    expected = tree(repo)
    monkeypatch.setenv("MY_API_TOKEN", "SECRET123")
    monkeypatch.chdir(repo)
    root = repo / "runs"  # a runs directory inside the repository, not ignored: its files stay out of the patch
    run = runsync.init(dir=root, mode="offline", settings=fast, config={"lr": 0.3})
    run_dir = root / run.id
    inc = runsync.open_run(run_dir).meta["streams"][0]["incarnation"]
    write_environment(run_dir / "streams" / "main", inc, disable_code=False, argv=ARGV)
    run.log({"loss": 1.0})
    run.finish()
    assert grep_secrets(run_dir) == []
    doc, patch = load_environment(run_dir)
    assert doc["git"]["root"] == str(repo.resolve()) and patch is not None
    assert b"runs/" not in patch.read_bytes()
    assert (doc["stream"], doc["incarnation"]) == ("main", inc)

    parser = argparse.ArgumentParser(prog="runsync")
    restore_cli.register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["restore", "--help"])
    assert exit_info.value.code == 0
    assert "detached worktree" in capsys.readouterr().out
    dest = tmp_path / "restored"
    args = parser.parse_args(["restore", run.id, str(dest), "--dir", str(root)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"restored run {run.id} into {dest}" in out and "patch   applied" in out and "next: cd" in out
    restored = tree(dest)
    assert {k: v for k, v in restored.items()} == {k: v for k, v in expected.items()}

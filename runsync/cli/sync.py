"""``runsync push|bundle|pull|verify|status``: moving runs between places (spec §12)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..format.errors import RunsyncError
from ._common import human, remote_arg, retry_args, storage_arg, storage_options, table


class _Progress:
    """A progress line on a terminal (runs, files, bytes, rate, ETA), redrawn twice a second while files
    move; a plain line per run otherwise. Called from push/pull/verify, partly from worker threads."""

    _SAY = {"checked": "up to date", "failed": "FAILED"}

    def __init__(self, quiet: bool, dry_run: bool = False,
                 counts: Callable[[Any], tuple[int, int | None]] = lambda r: (r.files_sent, r.bytes_sent)) -> None:
        self.quiet = quiet
        self.dry_run = dry_run
        self.counts = counts  # (files, bytes) moved so far, from the command's result (bytes None: not counted)
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.done = 0
        self.res: Any = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.ticker: threading.Thread | None = None

    def __call__(self, run: str, outcome: str, res: Any) -> None:
        if self.quiet:
            return
        with self.lock:
            self.res = res
            if outcome == "sending":
                if self.tty and self.ticker is None:
                    self.ticker = threading.Thread(target=self._tick, name="runsync-progress", daemon=True)
                    self.ticker.start()
                return
            self.done += 1
            if self.tty:
                self._draw()
            elif outcome != "unchanged":  # off a terminal, only what changed or failed (a log of 200 no-ops is noise)
                said = "would push" if self.dry_run and outcome == "pushed" else self._SAY.get(outcome, outcome)
                print(f"runsync: {run} {said} ({self._line(res)})", file=sys.stderr)

    def _line(self, res: Any) -> str:
        el = max(1e-6, time.monotonic() - self.t0)
        files, nbytes = self.counts(res)
        moved = ""
        if nbytes is not None:
            nbytes += getattr(res, "bytes_in_flight", 0)
            moved = f"{human(nbytes)}  {human(nbytes / el)}/s  "
        eta = f"ETA {max(0, res.runs - self.done) * el / self.done:.0f} s" if self.done else "ETA ?"
        failed = f"  {len(res.failures)} failed" if res.failures else ""
        return f"{self.done}/{res.runs} runs  {files} files  {moved}{eta}{failed}"

    def say(self, msg: str) -> None:
        """A message of its own line, from any thread; the progress line is drawn again below it."""
        with self.lock:
            if self.tty and self.res is not None:
                print(f"\r\033[Krunsync: {msg}", file=sys.stderr)
                self._draw()
            else:
                print(f"runsync: {msg}", file=sys.stderr, flush=True)

    def _draw(self) -> None:
        print(f"\r\033[K{self._line(self.res)}", end="", file=sys.stderr, flush=True)

    def _tick(self) -> None:
        while not self.stopped.wait(0.5):
            with self.lock:
                self._draw()

    def close(self) -> None:
        """End the line on a terminal (after the last redraw)."""
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join()
        if self.tty and not self.quiet and self.res is not None:
            with self.lock:
                self._draw()
                print(file=sys.stderr)


def _policy(args: argparse.Namespace, progress: _Progress | None = None) -> Any:
    from ..syncer import RetryPolicy

    policy = RetryPolicy(retries=args.retries, timeout=args.timeout)
    if getattr(args, "quiet", False):
        policy.say = lambda msg: None
    elif progress is not None:
        policy.say = progress.say  # retry lines above the progress line, not through it
    return policy


def _report(args: argparse.Namespace, res: Any, line: str) -> int:
    """Print a result as JSON or one summary line (unless --quiet), then its failures; the exit code."""
    if args.json:
        print(json.dumps(res.as_dict(), indent=1))
    elif not args.quiet:
        print(line)
    for run, err in res.failures:
        print(f"runsync: FAILED {run}: {err}", file=sys.stderr)
    return 1 if res.failures else 0


def cmd_push(args: argparse.Namespace) -> int:
    from ..syncer import PushOptions, Remote, push

    progress = _Progress(args.quiet or args.json, args.dry_run)
    remote = Remote(remote_arg(args.remote), policy=_policy(args, progress), storage_options=storage_options(args))
    if Path(args.src).is_file():
        from ..syncer.bundle import push_bundle

        res = push_bundle(Path(args.src), remote)
        return _report(args, res, f"bundle verified; {res.runs} runs: sent {res.files_sent} files, "
                       f"{human(res.bytes_sent)}")
    opts = PushOptions(dry_run=args.dry_run, include=args.include or [], exclude=args.exclude or [],
                       jobs=args.jobs, verify=args.verify)
    if args.watch:
        return _watch(args, opts)
    try:
        res = push(args.src, remote, opts, progress)
    finally:
        progress.close()
    verb = "would send" if args.dry_run else "sent"
    failed = f", {len(res.failures)} failed" if res.failures else ""
    return _report(args, res, f"{res.runs} runs ({res.runs_pushed} updated, {res.skipped} unchanged{failed}): {verb} "
                   f"{res.files_sent} files, {human(res.bytes_sent)}; {human(res.bytes_deduplicated)} already on "
                   f"{remote.display}; {res.seconds:.1f} s")


def _watch(args: argparse.Namespace, opts: Any) -> int:
    from ..syncer import Remote, RetryPolicy
    from ..syncer.watch import WatchOptions, watch

    if args.dry_run or Path(args.src).is_file():
        raise RunsyncError("--watch pushes a runs directory again and again; it cannot be combined with "
                           "--dry-run or a bundle")
    if args.interval <= 0:
        raise RunsyncError(f"--interval must be positive, got {args.interval}")
    # The daemon retries on its next pass: one operation gives up within a minute, and says nothing
    # (one line per outage comes from the loop instead of a line per retry).
    policy = RetryPolicy(retries=min(args.retries, 4), timeout=min(args.timeout, 60.0), say=lambda msg: None)
    remote = Remote(remote_arg(args.remote), policy=policy, storage_options=storage_options(args))
    if not args.json:
        print(f"runsync: pushing {args.src} to {remote.display} every {args.interval:g} s; "
              "Ctrl-C or SIGTERM stops after the current file", file=sys.stderr, flush=True)
    return watch(args.src, remote, opts, WatchOptions(interval=args.interval, json=args.json))


def cmd_bundle(args: argparse.Namespace) -> int:
    from ..syncer import PushOptions
    from ..syncer.bundle import make_bundle

    out = Path(args.output or time.strftime("runs-%Y%m%d-%H%M%S.tar"))
    res = make_bundle(Path(args.src), out, PushOptions(include=args.include or [], exclude=args.exclude or []))
    if args.json:
        print(json.dumps(res.as_dict(), indent=1))
    else:
        print(f"{out}: {res.runs} runs, {res.files} files, {human(res.bytes)} ({res.skipped_runs} runs unchanged "
              "since the last bundle)")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from ..syncer import Remote, pull

    progress = _Progress(args.quiet or args.json, counts=lambda r: (r.files, r.bytes))
    remote = Remote(remote_arg(args.remote), policy=_policy(args, progress), storage_options=storage_options(args))
    try:
        res = pull(remote, Path(args.dir), args.run or None, force=args.force, jobs=args.jobs, progress=progress)
    finally:
        progress.close()
    return _report(args, res, f"{res.runs} runs: {res.files} files ({human(res.bytes)}) copied, "
                   f"{res.skipped} already here")


def _is_local_runs(target: str, force: bool) -> bool:
    """A local runs root or run directory that holds no pushed runs (no manifest.json) is checked
    locally (spec §12.8); with ``--local`` any local directory is. Remotes are verified as before."""
    if "://" in target or not os.path.isdir(target):
        if force:
            raise RunsyncError(f"--local needs a local directory; {target} is not one")
        return False
    if force:
        return True
    from ..syncer.check import local_runs

    runs = local_runs(Path(target))
    return bool(runs) and not any((r / "manifest.json").is_file() for r in runs)


def cmd_verify_local(args: argparse.Namespace) -> int:
    from ..syncer.check import check_local

    quiet = args.quiet or args.json
    tty = sys.stderr.isatty()
    last = [time.monotonic()]

    def progress(done: int, total: int, res: Any) -> None:
        now = time.monotonic()
        if quiet or now - last[0] < (0.5 if tty else 5.0) and not (tty and done == total):
            return  # a terminal line twice a second; elsewhere (logs, CI) a line every 5 s
        last[0] = now
        line = f"runsync: checked {done}/{total} runs, {res.files} files, {len(res.damaged)} damaged"
        print(f"\r\033[K{line}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    res = check_local(Path(args.target), progress)
    if tty and not quiet and res.runs:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(res.as_dict(), indent=1))
        return 0 if res.ok else 1
    for path, why in res.damaged:
        print(f"DAMAGED  {path}: {why}")
    if res.runs == 0:
        print(f"no runs (directories with a run.json) under {args.target}")
    print(res.summary())
    return 0 if res.ok else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from ..syncer import Remote, verify

    if args.run is None and _is_local_runs(args.target, args.local):
        return cmd_verify_local(args)

    progress = _Progress(args.quiet or args.json, counts=lambda r: (r.files, None))
    remote = Remote(args.target, policy=_policy(args, progress), storage_options=storage_options(args))
    try:
        res = verify(remote, args.run or None, jobs=args.jobs, progress=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps({**res.as_dict(), **({} if res.ok else {"repair": _repair_command(remote.display)})},
                         indent=1))
    else:
        for r, p in res.missing:
            print(f"MISSING  {r}/{p}")
        for r, p in res.corrupt:
            print(f"CORRUPT  {r}/{p}")
        for r, p in res.stale:
            print(f"STALE    {r}/{p} (a stale copy at the run path; the committed bytes are intact)")
        for r, p in res.unlisted:
            print(f"UNLISTED {r}/{p} (no manifest names it, but stock readers read it; push --verify removes it)")
        for r, e in res.failures:
            print(f"FAILED   {r}: {e}")
        if res.unlisted_unchecked:
            print(f"note: {remote.display} lists no directories, so files no manifest names were not looked for "
                  f"({len(res.unlisted_unchecked)} runs); verify the storage it serves for that")
        if res.runs == 0:
            print(f"no pushed runs (with a {'manifest.json'}) under {remote.display}")
        print(f"{res.runs} runs, {res.files} files checked: " + ("OK" if res.ok else "PROBLEMS FOUND"))
        if not res.ok:
            print(f"to repair the remote from the original runs: {_repair_command(remote.display)}")
    return 0 if res.ok else 1


def _repair_command(target: str) -> str:
    """What rewrites damaged or missing files and manifests of TARGET from intact runs (spec §12.6)."""
    import shlex

    return f"runsync push --verify <runs dir> {shlex.quote(target)}"


def cmd_status(args: argparse.Namespace) -> int:
    from ..syncer.remote import Remote
    from ..syncer.source import file_stats, find_runs, run_files
    from ..syncer.state import SyncState

    url = args.remote or os.environ.get("RUNSYNC_REMOTE")
    if not url:
        raise RunsyncError("no REMOTE given and RUNSYNC_REMOTE is not set")
    src = Path(args.src)
    display = Remote(url).display  # as push names it (plain paths made absolute); no connection
    state = SyncState(src, display)
    rows, out = [], []
    for run_dir in find_runs(src):
        files = run_files(run_dir)
        n = state.changed(run_dir.name, file_stats(files))
        if n is None:
            st, n = "never pushed", len(files)
        else:
            st = "up to date" if n == 0 else "changed"
        out.append({"run": run_dir.name, "status": st, "files_to_check": n})
        rows.append([run_dir.name, st, str(n)])
    if args.json:
        print(json.dumps({"remote": display, "runs": out}, indent=1))
    else:
        print(table(rows, ["RUN", f"STATUS vs {display}", "FILES TO CHECK"]))
    return 0


def register(sub: Any) -> None:
    push = sub.add_parser(
        "push", help="push runs to a remote (any fsspec URL or path)",
        description="Copy a run directory, or every run under a directory, to REMOTE: a path, removable drive, "
        "file://, memory://, s3://, gs://, az://, sftp://... Files are compared by content hash; what the remote "
        "has is never sent again; saved files and media shared by runs are stored once. Each run's manifest is "
        "written last, so the remote never shows a state that was not true locally. Safe to interrupt and rerun.")
    push.add_argument("src", help="a run directory, a directory of runs, or a bundle .tar from `runsync bundle`")
    push.add_argument("remote", nargs="?", help="destination URL or path (default $RUNSYNC_REMOTE)")
    push.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    push.add_argument("--include", action="append", metavar="GLOB", help="only runs whose id matches (repeatable)")
    push.add_argument("--exclude", action="append", metavar="GLOB",
                      help="skip runs whose id matches (repeatable; also $RUNSYNC_IGNORE_GLOBS, comma-separated)")
    push.add_argument("--jobs", type=int, default=4, metavar="N", help="runs pushed in parallel (default 4)")
    push.add_argument("--verify", action="store_true", help="re-check the remote instead of trusting local sync state")
    push.add_argument("--watch", action="store_true",
                      help="keep pushing what changed until SIGTERM/Ctrl-C (a login-node daemon): one line per pass "
                      "that changed something, one when the remote goes down and one when it is back; live runs go "
                      "up as they train (the remote lags by at most --interval plus the writer's part interval)")
    push.add_argument("--interval", type=float, default=10.0, metavar="S",
                      help="with --watch: seconds between passes (default 10)")
    retry_args(push)
    storage_arg(push)
    push.add_argument("--json", action="store_true", help="print a JSON summary")
    push.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    push.set_defaults(func=cmd_push)

    bun = sub.add_parser(
        "bundle", help="write one archive of everything not yet bundled (one-way transfer)",
        description="For sites where only single files cross the air gap: write one tar holding every run file "
        "not in an earlier bundle, with each run's manifest and hashes. On the other side, `runsync push "
        "BUNDLE.tar REMOTE` verifies it whole (a truncated or altered bundle is rejected, naming the damaged "
        "files) and pushes it.")
    bun.add_argument("src", help="a run directory or a directory of runs")
    bun.add_argument("-o", "--output", help="archive to write (default runs-YYYYMMDD-HHMMSS.tar)")
    bun.add_argument("--include", action="append", metavar="GLOB")
    bun.add_argument("--exclude", action="append", metavar="GLOB")
    bun.add_argument("--json", action="store_true")
    bun.set_defaults(func=cmd_bundle)

    pull = sub.add_parser("pull", help="copy runs from a remote into a directory",
                          description="Copy runs from REMOTE into DIR, checking every file against its manifest hash.")
    pull.add_argument("remote", help="source URL or path")
    pull.add_argument("dir", help="destination directory of runs")
    pull.add_argument("--run", action="append", metavar="ID", help="only this run (repeatable)")
    pull.add_argument("--force", action="store_true",
                      help="where DIR holds a different run with the same id (other run.json id or created time), "
                      "replace it whole with the remote run: its files the remote manifest does not list are "
                      "removed (without --force such a run is refused and left as it is)")
    pull.add_argument("--json", action="store_true", help="print a JSON summary")
    pull.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    pull.add_argument("--jobs", type=int, default=4, metavar="N", help="runs, and files, fetched in parallel (default 4)")
    retry_args(pull)
    storage_arg(pull)
    pull.set_defaults(func=cmd_pull)

    ver = sub.add_parser("verify", help="recompute hashes against manifests, or check a local runs directory",
                         description="Recompute the content hash of every file of every pushed run under TARGET and "
                         "report missing, corrupt, stale and unlisted files (spec §12.6); exit status 1 if any. A local "
                         "runs directory or run directory without manifests (or any local directory, with --local) "
                         "is checked on its own: every part's page checksums, every WAL segment's records, every "
                         "JSON document and saved file; each damaged file is named.")
    ver.add_argument("target", help="URL or path holding pushed runs, or a local runs directory or run directory")
    ver.add_argument("--local", action="store_true",
                     help="check TARGET as a local runs directory even if its runs have manifests (pulled copies)")
    ver.add_argument("--run", action="append", metavar="ID", help="only this run (repeatable)")
    ver.add_argument("--json", action="store_true", help="print a JSON report")
    ver.add_argument("--quiet", "-q", action="store_true", help="no progress lines; only the findings")
    ver.add_argument("--jobs", type=int, default=4, metavar="N", help="runs, and files, checked in parallel (default 4)")
    retry_args(ver)
    storage_arg(ver)
    ver.set_defaults(func=cmd_verify)

    stat = sub.add_parser("status", help="what is not pushed yet",
                          description="Compare runs under SRC with what was last pushed to REMOTE (local sync state "
                          "only: no network).")
    stat.add_argument("src", help="a run directory or a directory of runs")
    stat.add_argument("remote", nargs="?", help="remote URL or path (default $RUNSYNC_REMOTE)")
    stat.add_argument("--json", action="store_true")
    stat.set_defaults(func=cmd_status)

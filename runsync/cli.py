"""The ``runsync`` command line: list and inspect runs (more commands join as they land)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from .format.errors import RunsyncError

__all__ = ["main"]

_DEFAULT_DIR = "$RUNSYNC_DIR or ./runs"


def _root(arg: str | None) -> Path:
    return Path(arg or os.environ.get("RUNSYNC_DIR") or "runs")


def _age(t: float | None) -> str:
    if t is None:
        return "-"
    d = max(0.0, time.time() - t)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= size:
            return f"{d / size:.0f}{unit} ago"
    return f"{d:.0f}s ago"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}"
    if v is None:
        return "-"
    return str(v)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, allow_nan=True))


def cmd_ls(args: argparse.Namespace) -> int:
    from .reader.runs import run_records

    root = _root(args.dir)
    if not root.is_dir():
        print(f"runsync: no runs directory {root} (set RUNSYNC_DIR or pass DIR)", file=sys.stderr)
        return 2
    records, errors = run_records(root)
    records.sort(key=lambda r: r["created"], reverse=True)
    if args.json:
        print(json.dumps({"runs": _jsonable(records), "errors": [{"path": str(p), "error": e} for p, e in errors]},
                         indent=1, allow_nan=True))
        return 1 if errors else 0
    shown_keys = _summary_columns(records, args.summary)
    rows = []
    for r in records:
        rows.append([r["name"], r["id"], r["status"], str(r["steps"]), _age(r["created"])]
                    + [_fmt(r.get(f"summary.{k}")) for k in shown_keys])
    print(_table(rows, ["NAME", "ID", "STATUS", "STEPS", "CREATED"] + shown_keys))
    if not records:
        print(f"(no runs in {root})")
    for p, e in errors:
        print(f"runsync: skipped {p}: {e}", file=sys.stderr)
    return 1 if errors else 0


def _summary_columns(records: list[dict[str, Any]], wanted: list[str] | None) -> list[str]:
    if wanted:
        return wanted
    counts: dict[str, int] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith("summary.") and isinstance(v, (int, float)) and not isinstance(v, bool):
                counts[k[8:]] = counts.get(k[8:], 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], k))[:3]


def cmd_show(args: argparse.Namespace) -> int:
    from .reader.run import open_run
    from .reader.runs import find_run

    view = open_run(find_run(args.run, args.dir))
    meta = view.meta
    last = view.last_values()
    config, summary = view.documents()
    if args.json:
        print(json.dumps(_jsonable({"meta": meta, "config": config, "summary": summary, "last": last}),
                         indent=1, allow_nan=True))
        return 0
    print(f"run      {meta['name']}  (id {meta['id']})")
    print(f"project  {meta['project']}" + (f"   group {meta['group']}" if meta.get("group") else ""))
    if meta.get("tags"):
        print(f"tags     {', '.join(meta['tags'])}")
    print(f"status   {meta['status']}   created {_age(meta['created'])}   duration {meta['duration']:.1f} s")
    print(f"path     {view.path}")
    for s in meta["streams"]:
        print(f"stream   {s['stream']}: {s['state']} (incarnation {s['incarnation']}, pid {s['pid']} on {s['host']}"
              + (f", {s['dropped_rows']} rows dropped" if s.get("dropped_rows") else "") + ")")
    print("\nconfig")
    for k, v in _flat(config):
        print(f"  {k} = {_fmt(v)}")
    print("\nsummary")
    for k, v in summary.items():
        print(f"  {k} = {_fmt(v)}")
    print("\nlast values")
    for k, v in last.items():
        print(f"  {k} = {_fmt(v)}")
    return 0


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.extend(_flat(v, f"{prefix}{k}."))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _remote_arg(value: str | None) -> str:
    url = value or os.environ.get("RUNSYNC_REMOTE")
    if not url:
        raise RunsyncError("no REMOTE given and RUNSYNC_REMOTE is not set")
    return url


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class _Progress:
    """A progress line on a terminal (runs, files, bytes, rate, ETA); plain lines otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.done = 0

    def __call__(self, run: str, res: Any) -> None:
        if self.quiet:
            return
        self.done += 1
        el = max(1e-6, time.monotonic() - self.t0)
        rate = res.bytes_sent / el
        eta = (res.runs - self.done) * el / self.done
        line = (f"{self.done}/{res.runs} runs  {res.files_sent} files  {_human(res.bytes_sent)}  "
                f"{_human(rate)}/s  ETA {eta:.0f} s")
        if self.tty:
            print(f"\r\033[K{line}", end="" if self.done < res.runs else "\n", file=sys.stderr, flush=True)
        else:
            print(f"runsync: {run} done ({line})", file=sys.stderr)


def _policy(args: argparse.Namespace) -> Any:
    from .syncer import RetryPolicy

    policy = RetryPolicy(retries=args.retries, timeout=args.timeout)
    if getattr(args, "quiet", False):
        policy.say = lambda msg: None
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
    from .syncer import PushOptions, Remote, push

    remote = Remote(_remote_arg(args.remote), policy=_policy(args))
    if Path(args.src).is_file():
        from .syncer.bundle import push_bundle

        res = push_bundle(Path(args.src), remote)
        return _report(args, res, f"bundle verified; {res.runs} runs: sent {res.files_sent} files, "
                       f"{_human(res.bytes_sent)}")
    opts = PushOptions(dry_run=args.dry_run, include=args.include or [], exclude=args.exclude or [],
                       jobs=args.jobs, verify=args.verify)
    res = push(args.src, remote, opts, _Progress(args.quiet or args.json))
    verb = "would send" if args.dry_run else "sent"
    return _report(args, res, f"{res.runs} runs ({res.runs_pushed} updated, {res.skipped} unchanged): {verb} "
                   f"{res.files_sent} files, {_human(res.bytes_sent)}; {_human(res.bytes_deduplicated)} already on "
                   f"{remote.display}; {res.seconds:.1f} s")


def cmd_bundle(args: argparse.Namespace) -> int:
    from .syncer import PushOptions
    from .syncer.bundle import make_bundle

    out = Path(args.output or time.strftime("runs-%Y%m%d-%H%M%S.tar"))
    res = make_bundle(Path(args.src), out, PushOptions(include=args.include or [], exclude=args.exclude or []))
    if args.json:
        print(json.dumps(res.as_dict(), indent=1))
    else:
        print(f"{out}: {res.runs} runs, {res.files} files, {_human(res.bytes)} ({res.skipped_runs} runs unchanged "
              "since the last bundle)")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from .syncer import Remote, pull

    remote = Remote(_remote_arg(args.remote), policy=_policy(args))
    res = pull(remote, Path(args.dir), args.run or None)
    return _report(args, res, f"{res.runs} runs: {res.files} files ({_human(res.bytes)}) copied, "
                   f"{res.skipped} already here")


def cmd_verify(args: argparse.Namespace) -> int:
    from .syncer import Remote, verify

    remote = Remote(args.target, policy=_policy(args))
    res = verify(remote, args.run or None)
    if args.json:
        print(json.dumps(res.as_dict(), indent=1))
    else:
        for r, p in res.missing:
            print(f"MISSING  {r}/{p}")
        for r, p in res.corrupt:
            print(f"CORRUPT  {r}/{p}")
        for r, e in res.failures:
            print(f"FAILED   {r}: {e}")
        if res.runs == 0:
            print(f"no pushed runs (with a {'manifest.json'}) under {remote.display}")
        print(f"{res.runs} runs, {res.files} files checked: " + ("OK" if res.ok else "PROBLEMS FOUND"))
    return 0 if res.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from .syncer.remote import redact
    from .syncer.source import file_stats, find_runs, run_files
    from .syncer.state import SyncState

    url = args.remote or os.environ.get("RUNSYNC_REMOTE")
    if not url:
        raise RunsyncError("no REMOTE given and RUNSYNC_REMOTE is not set")
    src = Path(args.src)
    state = SyncState(src, redact(url))
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
        print(json.dumps({"remote": redact(url), "runs": out}, indent=1))
    else:
        print(_table(rows, ["RUN", f"STATUS vs {redact(url)}", "FILES TO CHECK"]))
    return 0


def _retry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retries", type=int, default=8, help="retries of a transient network error (default 8)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="give up on one operation after S seconds of retrying (default 300)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runsync",
        description="Log ML training runs offline; inspect them here; push them anywhere later.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    ls = sub.add_parser("ls", help="list runs in a directory", description="Table of runs: name, id, status, "
                        "steps, age and a few summary values, newest first.")
    ls.add_argument("dir", nargs="?", help=f"directory of runs (default {_DEFAULT_DIR})")
    ls.add_argument("--summary", nargs="*", metavar="KEY", help="summary keys to show as columns")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_ls)
    show = sub.add_parser("show", help="show one run", description="Metadata, config, summary and the last value "
                          "of every logged key of one run.")
    show.add_argument("run", help="run directory, id, name, or 'latest'")
    show.add_argument("--dir", help=f"directory of runs to look in (default {_DEFAULT_DIR})")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)

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
    _retry_args(push)
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
    pull.add_argument("--json", action="store_true", help="print a JSON summary")
    pull.add_argument("--quiet", "-q", action="store_true")
    _retry_args(pull)
    pull.set_defaults(func=cmd_pull)

    ver = sub.add_parser("verify", help="recompute hashes against manifests",
                         description="Recompute the content hash of every file of every pushed run under TARGET and "
                         "report missing or corrupt files; exit status 1 if any.")
    ver.add_argument("target", help="URL or path holding pushed runs")
    ver.add_argument("--run", action="append", metavar="ID", help="only this run (repeatable)")
    ver.add_argument("--json", action="store_true")
    _retry_args(ver)
    ver.set_defaults(func=cmd_verify)

    stat = sub.add_parser("status", help="what is not pushed yet",
                          description="Compare runs under SRC with what was last pushed to REMOTE (local sync state "
                          "only: no network).")
    stat.add_argument("src", help="a run directory or a directory of runs")
    stat.add_argument("remote", nargs="?", help="remote URL or path (default $RUNSYNC_REMOTE)")
    stat.add_argument("--json", action="store_true")
    stat.set_defaults(func=cmd_status)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except RunsyncError as e:
        print(f"runsync: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

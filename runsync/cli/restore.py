"""``runsync restore``: the code a run was started from, back as a git worktree (recorded commit + patch)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ._common import DEFAULT_DIR

__all__ = ["cmd_restore", "register"]


def cmd_restore(args: argparse.Namespace) -> int:
    from ..reader.code import restore
    from ..reader.runs import find_run

    run_dir = find_run(args.run, args.dir)
    res = restore(run_dir, Path(args.dest) if args.dest else None,
                  repo=Path(args.repo) if args.repo else None, stream=args.stream)
    q = shlex.quote
    print(f"restored run {run_dir.name} into {res.dest}")
    print(f"  commit  {res.commit}" + (f" (branch {res.branch})" if res.branch else "") + f" from {res.repo}")
    if res.patch is None:
        print("  patch   none recorded (the working tree was clean)")
    elif res.applied:
        print(f"  patch   applied {res.patch.name}")
    for o in res.omitted:
        print(f"  note    {o.get('path')} was left out of the recorded patch ({o.get('reason')})")
    if res.patch is not None and not res.applied:
        print(f"runsync: the recorded patch {res.patch} does not apply cleanly; the worktree is left at the "
              f"commit.\n  git apply said: {res.apply_error}\n  try: cd {q(str(res.dest))} && git apply --3way "
              f"{q(str(res.patch.resolve()))}", file=sys.stderr)
    print(f"next: cd {q(str(res.dest))}   (a detached worktree of {res.repo}; remove it with "
          f"git -C {q(str(res.repo))} worktree remove --force {q(str(res.dest))})")
    return 0 if res.applied else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "restore", help="restore the code a run was started from",
        description="Check out the git commit a run recorded at init() into a new detached worktree DIR and apply "
                    "the recorded patch of uncommitted changes there. The repository is --repo, else the one the "
                    "run was started in, else the current directory's, whichever has the commit; nothing is fetched. "
                    "When none has it, prints the clone/checkout/apply commands to run instead.",
        epilog="example: runsync restore latest /tmp/code && cd /tmp/code")
    p.add_argument("run", metavar="RUN", help="run directory, id, name, or 'latest'")
    p.add_argument("dest", metavar="DIR", nargs="?",
                   help="where to create the worktree; must not exist or be empty (default ./<run-id>-code)")
    p.add_argument("--repo", metavar="PATH", help="a clone of the run's repository that has the recorded commit")
    p.add_argument("--stream", metavar="NAME", help="whose record to use (default: main, else the first stream)")
    p.add_argument("--dir", help=f"directory of runs to look in (default {DEFAULT_DIR})")
    p.set_defaults(func=cmd_restore)

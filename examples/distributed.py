"""The three common layouts of distributed training, with multiprocessing (no torch needed).

    python examples/distributed.py --layout shared   --world 4 --dir runs
    python examples/distributed.py --layout per-rank --world 4 --dir runs
    python examples/distributed.py --layout rank0    --world 4 --dir runs

``shared``   one run written by every rank: each rank is a *stream* of the same run
             (``init(id=..., stream=f"rank{r}")``; with torch-style RANK/WORLD_SIZE set, the
             stream name is chosen for you). Every rank's values are kept (spec §4.5): a key
             all ranks log reads as one row per (stream, step); system metrics are recorded
             per rank too (``open_run(...).system(wide=True)`` has a ``stream`` column).
``per-rank`` one run per rank, tied together by ``group`` (and ``job_type``):
             ``runsync runs DIR --group group`` lists them together.
``rank0``    only rank 0 logs; the other ranks call nothing (or ``init(mode="disabled")``,
             which keeps the same code path and writes nothing).

Each worker simulates a training loop: a loss that falls with the step plus per-rank noise.

Reading the shared layout (``recipes()`` below runs these after the ranks finish)::

    view = runsync.open_run("runs/<id>")
    view.history()                          # step, stream, time, train/loss, rank: a row per (rank, step)
    view.history(streams=["rank0"])         # one rank, in the single-stream form (step, time, keys)
    view.history(reduce="mean")             # one row per step: the mean over ranks ("min", "max" too)
    view.history().pivot(index="step", columns="stream", values="train/loss")   # a column per rank
    view.summary                            # rank 0's values; view.stream_summaries() every rank's
    # stock pandas, no runsync: resolve repeats within each stream, then reduce over ranks
    df = pd.read_parquet("runs/<id>/history")
    df = (df.sort_values(["stream", "step", "key", "time", "seq"])
            .drop_duplicates(["stream", "step", "key"], keep="last"))
    df[df.key == "train/loss"].groupby("step")["value"].mean()

In the terminal: ``runsync show <id>`` draws a sparkline per rank (``--reduce mean`` one for the
mean), ``runsync watch <id> --reduce mean`` follows it live, and ``runsync report`` draws one line
per rank with a legend and a "mean over streams" toggle.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import random

import runsync


def _loop(run: runsync.Run, rank: int, steps: int) -> None:
    rng = random.Random(rank)
    for step in range(steps):
        loss = 2.0 * math.exp(-step / (steps / 3)) + 0.05 * rng.random()
        run.log({"train/loss": loss, "rank": rank}, step=step)
    run.summary["final_loss"] = loss


def worker(layout: str, rank: int, world: int, run_id: str, group: str, steps: int, root: str) -> None:
    if layout == "shared":
        # Every rank opens the same run id at once: the first creates run.json, the others join it;
        # each writes its own stream.
        run = runsync.init(project="dist-demo", id=run_id, name=group, dir=root, stream=f"rank{rank}",
                           config={"world": world}, job_type="train")
    elif layout == "per-rank":
        run = runsync.init(project="dist-demo", name=f"{group}-rank{rank}", group=group, job_type=f"rank{rank}",
                           dir=root, config={"world": world, "rank": rank})
    else:  # rank0
        run = runsync.init(project="dist-demo", name=group, dir=root, config={"world": world},
                           mode="offline" if rank == 0 else "disabled")
    with run:
        _loop(run, rank, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layout", choices=["shared", "per-rank", "rank0"], default="shared")
    ap.add_argument("--world", type=int, default=4)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--dir", default="runs")
    args = ap.parse_args()

    run_id = "dist" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(6))
    group = f"{args.layout}-{run_id}"
    ctx = mp.get_context("spawn")  # what torchrun-style launchers give you: fresh processes
    procs = [ctx.Process(target=worker, args=(args.layout, r, args.world, run_id, group, args.steps, args.dir))
             for r in range(args.world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a worker failed with exit code {p.exitcode}")
    print(f"{args.layout}: {args.world} ranks done; group {group}")
    if args.layout == "shared":
        recipes(args.dir, run_id)


def recipes(root: str, run_id: str) -> None:
    """The reading recipes of the module docstring, on the run just written."""
    view = runsync.open_run(f"{root}/{run_id}")
    per_rank = view.history(keys=["train/loss"])
    mean = view.history(keys=["train/loss"], reduce="mean")
    curves = per_rank.pivot(index="step", columns="stream", values="train/loss")
    print(f"per-rank rows {len(per_rank)} ({per_rank['stream'].nunique()} streams); mean over ranks at the last "
          f"step {mean['train/loss'].iloc[-1]:.4f}; columns of the per-rank pivot: {', '.join(curves.columns)}")
    try:
        import pandas as pd
    except ImportError:
        return
    df = pd.read_parquet(f"{root}/{run_id}/history")
    df = (df.sort_values(["stream", "step", "key", "time", "seq"])
            .drop_duplicates(["stream", "step", "key"], keep="last"))
    stock = df[df.key == "train/loss"].groupby("step")["value"].mean()
    print(f"stock pandas mean at the last step {stock.iloc[-1]:.4f}")


if __name__ == "__main__":
    main()

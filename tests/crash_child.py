"""Child process for tests/test_crash.py: log in a tight loop until killed.

Run as ``python crash_child.py '<json config>'``. Not a test module (pytest does
not collect it). The parent learns how far the child got from a small "ack"
file of int64 slots written with os.pwrite (a whole syscall: a kill cannot tear
it, and the page cache outlives the process):

    slot 0  i + 1 after call i *returned* (written after each return): every call
            below it was acknowledged (a resumed child starts at the run's next step)
    slot 1  phase: 1 = init() returned, 2 = the requested logging is done
    slot 2  number of summary updates that have returned (beat thread)
    slot 3  pid of the grandchild, if one was spawned

Config keys: root, id, ack, kind ("str" | "bool" | "mixed"), prefix (of the keys
"i", "x", "s"), settings (kwargs of runsync.Settings), stream, resume, count (stop
after the call count - 1; default: never), end ("hang" | "exit" | "raise" |
"finish": what to do then), beat (a thread sets run.summary["beat"] in a loop),
grandchild (a config for a grandchild to spawn first, in the same process group),
self_kill_on_memory_segment (kill -9 itself right after a log() call that left its
record in a non-durable in-memory WAL segment), tail_after_part (log until the
first history part appears, then this many more calls, then stop).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time

SLOT = struct.Struct("<q")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    fd = os.open(cfg["ack"], os.O_RDWR)

    def put(slot: int, value: int) -> None:
        os.pwrite(fd, SLOT.pack(value), 8 * slot)

    gc = cfg.get("grandchild")
    if gc is not None:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), json.dumps(gc)])
        put(3, proc.pid)

    if cfg.get("wal_dir"):
        os.environ["RUNSYNC_WAL_DIR"] = cfg["wal_dir"]
    import runsync

    settings = runsync.Settings(**cfg["settings"])
    run = runsync.init(
        id=cfg["id"], dir=cfg["root"], stream=cfg.get("stream"), resume=cfg.get("resume", False), settings=settings
    )
    put(1, 1)

    if cfg.get("beat"):
        def beat() -> None:
            j = 0
            while True:
                run.summary["beat"] = j
                j += 1
                put(2, j)
                time.sleep(0.001)

        threading.Thread(target=beat, daemon=True).start()

    kind = cfg["kind"]
    ki, kx, ks = (cfg.get("prefix", "") + k for k in "ixs")
    count = cfg.get("count")
    tail_after_part = cfg.get("tail_after_part")
    history = os.path.join(cfg["root"], cfg["id"], "history")
    self_kill = cfg.get("self_kill_on_memory_segment", False)
    log = run.log
    i = run.step  # 0, or where a resumed run continues; slot 0 = "calls below this returned"
    while count is None or i < count:
        if kind == "str":
            log({ki: i, kx: i * 0.5, ks: f"v{i}"})
        elif kind == "bool":
            log({ki: i, kx: i * 0.5, ks: i % 3 == 0})
        else:  # "mixed": GENERIC records between runs of ROW records
            log({ki: i, kx: i * 0.5, ks: f"v{i}" if i % 16 == 0 else i % 3 == 0})
        i += 1
        put(0, i)  # only after log() returned: i calls are acknowledged
        if (tail_after_part is not None and count is None and i % 64 == 0
                and any(n.endswith(".parquet") and not n.startswith(".") for n in os.listdir(history))):
            count = i + tail_after_part
        if self_kill and not getattr(getattr(getattr(run, "_enc", None), "seg", None), "durable", True):
            os.kill(os.getpid(), signal.SIGKILL)

    put(1, 2)
    end = cfg.get("end", "hang")
    if end == "hang":
        while True:
            time.sleep(1)
    elif end == "raise":
        raise RuntimeError("training blew up (on purpose)")
    elif end == "finish":
        run.finish()
    # "exit": fall off the end without finish(); atexit must finish the run


if __name__ == "__main__":
    main()

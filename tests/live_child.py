"""Child process for tests of live runs (stock readers, live pushes): a run training in its own process.

Run as ``python live_child.py '<json config>'``. Not a test module. Config keys: root, id, steps,
sleep (seconds between log() calls), settings (kwargs of runsync.Settings), end ("finish": finish the
run and exit 0; "hang": sleep until killed). Writes ``started`` then ``done`` into the file ``ack``
when init() returned and when the steps are logged.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    cfg = json.loads(sys.argv[1])
    import runsync

    run = runsync.init(id=cfg["id"], dir=cfg["root"], settings=runsync.Settings(**cfg.get("settings", {})))
    with open(cfg["ack"], "w") as f:
        f.write("started")
    for step in range(cfg["steps"]):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 1000, "tag": f"s{step % 97}"})
        time.sleep(cfg.get("sleep", 0.0))
    with open(cfg["ack"], "w") as f:
        f.write("done")
    if cfg.get("end", "finish") == "hang":
        while True:
            time.sleep(1)
    run.finish()


if __name__ == "__main__":
    main()

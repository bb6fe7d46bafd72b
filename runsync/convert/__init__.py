"""Bring runs in from other tools and take them out again (issue 17).

One module per tool — ``tensorboard``, ``mlflow``, ``wandb``, ``csv`` — each
importing its tool's package lazily, inside its functions, so ``import
runsync`` never imports them. Imported runs are written by ``sink.write_import``
through the format's own functions (spec §3.1 ``source``, §6.4); exports read
runs with ``runsync.reader``.
"""

from __future__ import annotations

__all__: list[str] = []

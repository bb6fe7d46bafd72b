"""Reading runs on the machine that has them: depends on runsync.format only."""

from .run import RunView, open_run
from .runs import find_run, runs
from .smooth import smooth

__all__ = ["open_run", "RunView", "runs", "find_run", "smooth"]

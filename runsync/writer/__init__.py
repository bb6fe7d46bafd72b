"""The writer: the training-side API. Depends on runsync.format only."""

from .encoder import ForkedRunError, RunFinishedError
from .run import Run, current, finish, init, log
from .settings import Settings

__all__ = ["Run", "init", "log", "finish", "current", "Settings", "RunFinishedError", "ForkedRunError"]

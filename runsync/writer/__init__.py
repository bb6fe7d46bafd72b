"""The writer: the training-side API. Depends on runsync.format only."""

from .encoder import ForkedRunError, LogValueError, RunFinishedError
from .media import Histogram, Image, Table, Text
from .run import Run, current, finish, init, log
from .settings import Settings

__all__ = ["Run", "init", "log", "finish", "current", "Settings", "RunFinishedError", "ForkedRunError",
           "LogValueError", "Image", "Histogram", "Table", "Text"]

"""Bellhop protocol package: the names and formats every service agrees on."""

from bellhop_shared.keys import Keys
from bellhop_shared.states import SessionState, WorkerState

__all__ = ["Keys", "SessionState", "WorkerState"]

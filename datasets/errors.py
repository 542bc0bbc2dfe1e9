"""The one error type the data layer raises for unreadable samples."""
from __future__ import annotations


class BadSampleError(RuntimeError):
    """A stored sample cannot be read. The message is one line: the file or key, the problem, the fix."""

    def __init__(self, location: str, problem: str):
        self.location = location
        self.problem = problem
        super().__init__(f"{location}: {problem} (rebuild the store, or pass skip_bad=True to skip such samples)")

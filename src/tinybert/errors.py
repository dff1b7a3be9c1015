"""The one exception type for mistakes a user can make (bad file, row, key, shape).

The CLI turns it into a single clear message and a non-zero exit, never a traceback.
"""


class UserError(Exception):
    """A problem with the user's inputs or configuration; the message says what and how to fix it."""


class Interrupted(UserError):
    """Training stopped on a signal (Ctrl-C = SIGINT, SIGTERM) at a step boundary, after saving
    that step as a checkpoint. The CLI exits with 128 + the signal's number (130, 143), as a
    shell does for a process a signal ended."""

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.exit_code = 128 + int(signum)

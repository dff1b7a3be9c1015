"""The one exception type for mistakes a user can make (bad file, row, key, shape).

The CLI turns it into a single clear message and a non-zero exit, never a traceback: 2, or the
`exit_code` of a subclass (an interrupt's 128 + signal; a run's model no better than the trivial
baseline: 3 or 4).
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


# `tinybert run`'s exit statuses for a model no better than the dev set's trivial baseline
# (2 is a user error, 128 + N a signal): the final student (run.allow_trivial accepts it), and
# a fine-tuned teacher, which stops the run before task-distill (run.allow_weak_teacher).
TRIVIAL_STUDENT_EXIT = 3
WEAK_TEACHER_EXIT = 4


class NoBetterThanBaseline(UserError):
    """A model `tinybert run` made scores no better than the trivial baseline of the dev set;
    the CLI exits with `exit_code` (TRIVIAL_STUDENT_EXIT or WEAK_TEACHER_EXIT)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

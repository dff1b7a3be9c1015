"""The one exception type for mistakes a user can make (bad file, row, key, shape).

The CLI turns it into a single clear message and a non-zero exit, never a traceback.
"""


class UserError(Exception):
    """A problem with the user's inputs or configuration; the message says what and how to fix it."""

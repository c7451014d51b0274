"""The one error type the entry points turn into a single line and exit code 2.

Every problem a user can fix (a missing file, a bad flag value, a checkpoint of another kind)
raises a subclass of UserError whose message names the path or flag and says what to do.
Entry points catch UserError alone, so a new kind of user error needs no list kept in sync.
"""


class UserError(ValueError):
    """Bad input the user can fix; the message is one line naming the path or flag and the fix."""


class PretrainError(UserError):
    """Pretrained weights were asked for but cannot be obtained or read; the message says how to fix it."""

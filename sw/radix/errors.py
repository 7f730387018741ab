"""The base of every error that a user's input causes (a file, an option, a model, data).

The CLI turns an :class:`InputError` into one line naming the thing at fault and exit status 2
(README "Exit codes"); anything else that escapes a command is an internal error (status 3).
"""


class InputError(ValueError):
    """Something the user gave cannot be used; the message names it and why."""

"""The base class of errors caused by input the user can fix.

The CLI prints these as one-line messages instead of tracebacks; anything else is
a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, named with what to do about it."""

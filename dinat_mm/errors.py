"""The one user-facing error type: what a user asked for cannot be done, and the message says which
argument, file or config entry is at fault. The tools print it without a traceback."""


class UserError(Exception):
    """Bad input (a missing file, an unknown option, a checkpoint of another architecture)."""

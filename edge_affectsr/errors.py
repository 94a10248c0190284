"""The one exception type the CLI turns into a clean ``error: ...`` line instead of a traceback."""


class UserError(Exception):
    """Bad input the user can fix (a path, a config key, a model name); the message says how."""

"""Errors a user can cause: reported as one line on stderr with exit code 2."""


class UserError(Exception):
    """Bad input (config, data, checkpoint, address): one clear line, exit 2."""

    exit_code = 2

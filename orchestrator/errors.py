"""Errors a user can cause: reported as one line on stderr with exit code 2."""


class UserError(Exception):
    """Bad input (config, data, checkpoint, address): one clear line, exit 2."""

    exit_code = 2


class TrainingFault(Exception):
    """Training stopped on a numerical fault (NaN/inf loss); the last good checkpoint is kept."""

    exit_code = 3


class Interrupted(Exception):
    """Stopped by the user (Ctrl-C) after writing a checkpoint; ``--resume`` continues."""

    exit_code = 130

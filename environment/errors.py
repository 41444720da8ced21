"""Errors a user can cause and fix: each carries one clear line."""


class InputError(Exception):
    """Bad input from the user (path, database, option): reported as one line, exit code 2."""


class RunError(Exception):
    """A run that could not finish (not the user's input): reported as one line, exit code 1."""

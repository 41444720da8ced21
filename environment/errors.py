"""Errors a user can cause and fix: each carries one clear line."""


class InputError(Exception):
    """Bad input from the user (path, database, option): reported as one line, exit code 2."""

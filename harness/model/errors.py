"""The one error the model raises for input it cannot use (exit status 2)."""


class BadInput(Exception):
    """Input the model cannot use; the message names the file, field or option. Exit status 2."""

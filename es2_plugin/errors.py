"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations


class ES2UsageError(Exception):
    """Bad input: the message names the problem and the fix, in one line."""

    exit_code = 2


def one_line(message: str) -> str:
    """Collapse a message to one line so a user sees exactly one line per problem."""
    return " ".join(str(message).split())

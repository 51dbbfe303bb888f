"""Errors that carry a one-line message for the user.

`ConfigError` is raised for bad input anywhere (configs, CLI flags, data folders, model names). The CLI turns it
into one line on stderr and exit code 2, before any training starts.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input: the message names the bad value and what is allowed."""


class TrialFailed(RuntimeError):
    """A trial stopped on purpose (non-finite loss, out of memory); the message is the reason."""


class TrialStopped(Exception):
    """The harness asked a running trial to stop (a scheduler such as ASHA ended it early): not a failure."""

"""Errors a user can fix, shared by every command.

A command raises :class:`UsageError` for a problem the user can act on (a bad path, config or
option); ``streamrec`` prints it as one line, never as a traceback, and exits 2. This module
imports nothing of the commands, so each of them and ``dataflows.cli`` can import it.

>>> try:
...     load_config_or_stop("no-such-file.yaml")
... except UsageError as error:
...     print(error)
no-such-file.yaml: cannot read the config file (No such file or directory)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from operators.config import Config


class UsageError(Exception):
    """A problem the user can fix (bad path, bad config, bad option); printed without traceback."""


def load_config_or_stop(path: str | Path | None) -> Config:
    """The config at ``path`` (None: the defaults), or a :class:`UsageError` with its one-line
    problem."""
    from operators.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as error:
        raise UsageError(str(error)) from None

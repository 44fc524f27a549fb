"""The few exceptions ragtune raises on purpose.

Every message names the bad value and what would be valid, so the CLI can print it as one line.
"""

from __future__ import annotations


class RagtuneError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class InputError(RagtuneError, ValueError):
    """A bad argument from the user: path, query, k, mode, config value."""


class IndexBusyError(RagtuneError):
    """Another process is writing to the same index folder."""


class ModelLoadError(RagtuneError):
    """A model could not be loaded from the given name or path."""


class StoreFormatError(RagtuneError):
    """An index folder was written by an incompatible version of ragtune, or is damaged."""

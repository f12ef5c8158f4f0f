"""The errors mnistkit raises for bad input.

Every error names what was wrong (the file, the field, what was expected and what was found) so the
CLI can print it as one line instead of a traceback. They subclass ValueError because in each case
a value handed to mnistkit was wrong.
"""

from __future__ import annotations

import difflib


class MnistkitError(ValueError):
    """Base class: a problem with the user's input that mnistkit can explain."""


class DataFormatError(MnistkitError):
    """A data file is missing, corrupt, truncated or inconsistent."""


class CheckpointError(MnistkitError):
    """A run directory or checkpoint cannot be loaded."""


class ImageError(MnistkitError):
    """An image given for prediction cannot be used."""


class UnknownNameError(MnistkitError):
    """A model, dataset or preset name is not registered."""

    def __init__(self, kind: str, name: str, known: list[str]):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(f"unknown {kind} '{name}'.{hint} Known {kind}s: {', '.join(sorted(known))}")
        self.name = name
        self.known = known

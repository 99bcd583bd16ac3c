"""The one error family of vidsr.

Every error carries a message written for users: what was expected, what was
found, what to do. Each subclass also inherits the matching builtin so callers
may catch either (as PyAV does with ``InvalidDataError(FFmpegError, ValueError)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# Whether messages name options as the `vidsr` command's flags rather than as Python keyword
# arguments; the command turns it on for its run (messages are written in worker threads
# too, so this is the process's, not a context variable).
_command_line_spelling = False


@contextlib.contextmanager
def command_line_spelling() -> Iterator[None]:
    """While the block runs, :func:`option` writes the `vidsr` command's flags."""
    global _command_line_spelling
    saved, _command_line_spelling = _command_line_spelling, True
    try:
        yield
    finally:
        _command_line_spelling = saved


def option(name: str, value: str | None = None) -> str:
    """How a message tells the reader to set option ``name`` (its Python keyword) to
    ``value`` (None: a switch turned on), in the reader's spelling: ``--on-error skip``
    under the `vidsr` command, ``on_error='skip'`` from Python."""
    if _command_line_spelling:
        flag = "--" + name.replace("_", "-")
        return flag if value is None else f"{flag} {value}"
    return f"{name}={True if value is None else value!r}"


def with_article(word: str) -> str:
    """``word`` after "a" or "an", for messages that name a kind (``an espcn``, ``a vdsr``).

    Goes by the first letter, which is right for the words vidsr puts there
    (architecture names: an edsr, an espcn, a vdsr).
    """
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


class VidsrError(Exception):
    """Base of every error vidsr raises on purpose."""


class InputError(VidsrError, ValueError):
    """An input file is missing, unreadable, or not what was expected."""


class DecodeError(InputError):
    """A frame or packet of the input could not be decoded."""


class OutputError(VidsrError, OSError):
    """The output cannot be written where or how it was asked."""


class EncodeError(VidsrError, RuntimeError):
    """The encoder or muxer failed."""


class ModelError(VidsrError, ValueError):
    """An unknown model, an unsupported scale, or a model that cannot run."""


class WeightsError(ModelError):
    """A weights file that does not fit the architecture or cannot be read."""


class UnsafeCheckpointError(WeightsError):
    """A checkpoint that would need arbitrary code to be unpickled."""


class OutOfMemoryError(VidsrError, MemoryError):
    """A frame does not fit on the device even at the smallest batch and tile."""


class OptionsError(VidsrError, ValueError):
    """Options that contradict each other or are out of range."""


class ModelChoiceError(ModelError, OptionsError):
    """A model name or a scale that does not exist: a usage error (exit 2), like any other
    wrong option value."""


class Cancelled(VidsrError):
    """The run was cancelled (Ctrl-C or a failure in another stage)."""

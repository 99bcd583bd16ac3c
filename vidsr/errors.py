"""The one error family of vidsr.

Every error carries a message written for users: what was expected, what was
found, what to do. Each subclass also inherits the matching builtin so callers
may catch either (as PyAV does with ``InvalidDataError(FFmpegError, ValueError)``).
"""

from __future__ import annotations


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


class Cancelled(VidsrError):
    """The run was cancelled (Ctrl-C or a failure in another stage)."""

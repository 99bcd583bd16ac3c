"""The strength knob's value: a blend from 0 to 1 (``--strength``, ``crisp@0.5``).

Read here, once, for the command line's options and for model names that carry a
strength; this module imports nothing heavy (the option table reads it).
"""

from __future__ import annotations

from vidsr.errors import OptionsError


def strength_value(text: str) -> float:
    """A blend from 0 to 1 (``--strength 0.5``)."""
    try:
        value = float(text)
    except ValueError:
        raise OptionsError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise OptionsError(f"expected a number from 0 to 1, got {text!r}")
    return value

"""Learning rate as a pure function of the step.

No scheduler object carries state: the rate of step ``k`` is computed from
the options, so a resumed run cannot drift from an uninterrupted one.
"""

from __future__ import annotations

import bisect
import math

from vidsr.train.config import OptimOptions


def learning_rate(options: OptimOptions, step: int, total_steps: int, *,
                  base: float | None = None) -> float:
    """The rate for (0-based) ``step``.

    ``multistep``: ``base * gamma ** (milestones passed)``, a milestone ``m``
    taking effect from step ``m`` (ESRGAN halves at 200k, 400k...).
    ``cosine``: from ``base`` at step 0 to ``min_lr`` at ``total_steps``.
    ``base`` defaults to ``options.lr`` (the discriminator passes its own).
    """
    lr = options.lr if base is None else base
    if options.schedule == "multistep":
        return lr * options.gamma ** bisect.bisect_right(options.milestones, step)
    progress = min(step / max(total_steps, 1), 1.0)
    return options.min_lr + (lr - options.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

"""vsvidsr: vidsr's super-resolution models as a VapourSynth filter.

``clip = vsvidsr.upscale(clip, model="compact", scale=2)``; see :func:`upscale`.
Installed by ``pip install 'vidsr[vapoursynth]'``; it imports in ``python`` and in
``vspipe`` alike.
"""

from __future__ import annotations

from vsvidsr.filter import upscale

__all__ = ["upscale"]

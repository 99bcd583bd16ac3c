"""vidsr: video super-resolution.

Public entry points: ``upscale_video(src, dst, **options)`` and
``load_model(name_or_path, scale=..., weights=...)``. They are imported on
first use so ``import vidsr`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vidsr.errors import VidsrError

__version__ = "0.1.0"
__all__ = ["VidsrError", "load_model", "upscale_video", "__version__"]

if TYPE_CHECKING:
    from vidsr.models.zoo import load_model
    from vidsr.run.transcode import upscale_video


def __getattr__(name: str) -> Any:
    if name == "upscale_video":
        from vidsr.run.transcode import upscale_video

        return upscale_video
    if name == "load_model":
        from vidsr.models.zoo import load_model

        return load_model
    raise AttributeError(f"module 'vidsr' has no attribute {name!r}")

"""Windows of frames for models that see ``2r + 1`` frames: the filter's side.

Each request for frame ``n`` asks the source clip for its neighbours: ``r`` frames on
each side for the window, and one more on each side to judge the cuts at the window's
edges the way the transcoder does (clamped at the clip's ends, where a window repeats
the first or last frame). A window never crosses a cut (it repeats the nearest frame of
its own shot, as :mod:`vidsr.io.windows` does in the transcoder). A cut between two
frames is where the script marked one (:func:`vidsr.io.windows.marked_cut`, the rule
``vidsr script.vpy`` follows too). Where neither frame carries either prop, the
transcoder's own luma detector decides, on the same frames, so a script without the props gives what
``vidsr`` gives on the same frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import vapoursynth as vs

from vidsr.io.frames import PlaneLayout
from vidsr.io.script_source import frame_planes
from vidsr.io.windows import (
    is_cut,
    marked_cut,
    thumbnail,
    thumbnail_change,
    window_indices,
)


def neighbour_clips(clip: vs.VideoNode, radius: int) -> list[vs.VideoNode]:
    """Clips whose frame ``n`` is ``clip``'s frame ``n + k``, clamped to the clip, for
    ``k`` from ``-(radius + 1)`` to ``radius + 1``: a request's window and the frames its
    edge cuts are judged on."""
    reach = radius + 1
    return [_shifted(clip, k) for k in range(-reach, reach + 1)]


def _shifted(clip: vs.VideoNode, k: int) -> vs.VideoNode:
    """``clip`` moved ``k`` frames earlier (later for negative ``k``), its first or last
    frame repeated where that runs past an end."""
    count = clip.num_frames
    if k == 0:
        return clip
    if abs(k) >= count:
        return clip[0 if k < 0 else count - 1] * count
    if k < 0:
        return clip[0] * -k + clip[:count + k]
    return clip[k:] + clip[count - 1] * k


def window_of(n: int, frames: Sequence[vs.VideoFrame], radius: int, last: int,
              layout: PlaneLayout) -> tuple[list[int], list[list[np.ndarray]]]:
    """Frame ``n``'s window from the frames :func:`neighbour_clips` gave for it: the
    clip's frame index of each of the window's frames, in display order, and their planes
    in vidsr's layout."""
    reach = radius + 1

    def at(index: int) -> vs.VideoFrame:
        return frames[min(max(index, 0), last) - n + reach]

    thumbs: dict[int, np.ndarray] = {}

    def change(index: int) -> float:
        """How far frame ``index`` is from the one before; 0 at and past the clip's ends."""
        if index <= 0 or index > last:
            return 0.0
        for i in (index - 1, index):
            if i not in thumbs:
                thumbs[i] = thumbnail(np.asarray(at(i)[0]), layout)
        return thumbnail_change(thumbs[index - 1], thumbs[index])

    def starts_shot(index: int) -> bool:
        marked = marked_cut(at(index - 1).props, at(index).props)
        if marked is not None:
            return marked
        return is_cut(change(index - 1), change(index), change(index + 1))

    inside = range(max(n - radius + 1, 1), min(n + radius, last) + 1)
    first = max((i for i in inside if i <= n and starts_shot(i)), default=0)
    after = [i - 1 for i in inside if i > n and starts_shot(i)]
    indices = window_indices(n, radius, first, min(after, default=last))
    planes = {i: frame_planes(at(i), layout) for i in set(indices)}
    return indices, [planes[i] for i in indices]


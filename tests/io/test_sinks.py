"""Both sinks write what the run plan says: the same stream tags and the same timestamps.

Checked with the system's ffprobe, a reader independent of PyAV.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction

import pytest

from vidsr.errors import OptionsError
from vidsr.io.colour import ColourSpec
from vidsr.io.encode_options import EncodeOptions
from vidsr.run.transcode import TranscodeOptions, upscale_video

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="needs a system ffmpeg and ffprobe (apt-get install ffmpeg)")

QUIET = TranscodeOptions(progress=False)
BT709_FULL = ColourSpec("bt709", True, "bt709", "bt709")
BT2020 = ColourSpec("bt2020nc", False, "bt2020", "smpte2084")


def ffprobe(path) -> tuple[dict, list[str]]:
    """The video stream's tags, and its frames' presentation times."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=pix_fmt,color_space,color_range,color_primaries,color_transfer,"
         "sample_aspect_ratio:packet=pts_time", "-of", "json", str(path)],
        check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    times = sorted(p["pts_time"] for p in data["packets"])
    return data["streams"][0], times


@pytest.mark.parametrize("option", ["vstats_file", "attach"])
def test_ffmpeg_takes_only_the_encoders_options(clip, tmp_path, option):
    # An encoder option (from a shared preset, say) must not become one of ffmpeg's own:
    # `-vstats_file PATH` wrote that file, `-attach PATH` copied a file into the output.
    src = clip("in.mkv", width=32, height=24, frames=2)
    target = tmp_path / "target.txt"
    dst = tmp_path / "out.mkv"
    encode = EncodeOptions(codec="libx264", encoder_opts=(("tune", "grain"),
                                                          (option, str(target))))
    with pytest.raises(OptionsError) as caught:
        upscale_video(src, dst, model="nearest", scale=2, encode=encode,
                      options=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
    ffmpeg = shutil.which("ffmpeg")  # the plan resolves the name
    assert str(caught.value) == (f"libx264 has no option {option!r} in {ffmpeg} (see `{ffmpeg}"
                                 " -h encoder=libx264`)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv"]
    # The encoder's own options go through.
    upscale_video(src, dst, model="nearest", scale=2,
                  encode=EncodeOptions(codec="libx264", encoder_opts=(("tune", "grain"),)),
                  options=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
    assert ffprobe(dst)[0]["pix_fmt"] == "yuv420p"


@pytest.mark.parametrize("case", ["rgb", "10-bit", "vfr"])
def test_pyav_and_ffmpeg_sinks_write_the_same_tags_and_timestamps(clip, tmp_path, case):
    if case == "rgb":
        src = clip("rgb.mkv", pix_fmt="bgr0", codec="ffv1", content="bars")
        encode = EncodeOptions(codec="libx264", pix_fmt="yuv444p")
    elif case == "10-bit":
        src = clip("ten.mkv", pix_fmt="yuv420p10le", codec="ffv1", colour=BT2020,
                   content="gradient")
        encode = EncodeOptions(codec="libx264")
    else:
        src = clip("vfr.mkv", pts=[0, 40, 100, 120, 200, 333], colour=BT709_FULL,
                   sar=Fraction(8, 9), content="moving")
        encode = EncodeOptions(codec="libx264")
    outputs = {}
    for sink, ffmpeg in (("pyav", None), ("ffmpeg", "ffmpeg")):
        dst = tmp_path / f"{sink}.mkv"
        upscale_video(src, dst, model="nearest", scale=2, encode=encode,
                      options=TranscodeOptions(progress=False, ffmpeg=ffmpeg))
        outputs[sink] = ffprobe(dst)
    assert outputs["pyav"] == outputs["ffmpeg"]
    tags, times = outputs["pyav"]
    if case == "rgb":
        # An RGB source written as YUV is tagged with the matrix it was converted with
        # (BT.601 at this SD size), not gbr/full range.
        assert (tags["color_space"], tags["color_range"]) == ("smpte170m", "tv")
        assert tags["pix_fmt"] == "yuv444p"
    elif case == "10-bit":
        assert tags["pix_fmt"] == "yuv420p10le"
        assert (tags["color_space"], tags["color_primaries"], tags["color_transfer"]) == (
            "bt2020nc", "bt2020", "smpte2084")
    else:
        assert (tags["color_space"], tags["color_range"]) == ("bt709", "pc")
        assert tags["sample_aspect_ratio"] == "8:9"
        assert [round(float(t) * 1000) for t in times] == [0, 40, 100, 120, 200, 333]

"""Run presets: the bundled ones, a file of one's own, overrides and bad keys."""

from __future__ import annotations

import json

import pytest

from vidsr.__main__ import main
from vidsr.errors import OptionsError
from vidsr.options import preset_values
from vidsr.run_presets import bundled_presets, load_preset


def test_every_bundled_preset_parses_as_vidsr_options():
    presets = {p.name: p for p in bundled_presets()}
    assert set(presets) == {"anime", "archival-sd", "fast-preview", "film"}
    for preset in presets.values():
        assert preset_values(preset)["model"] == preset.options["model"]
    archival = preset_values(presets["archival-sd"])
    assert (archival["square_pixels"], archival["height"], archival["codec"],
            archival["pix_fmt"]) == (True, 1080, "libx265", "yuv420p10le")
    assert preset_values(presets["film"])["encoder_opt"] == [("tune", "grain")]


def test_a_preset_shapes_the_plan_and_the_command_line_overrides_it(clip, tmp_path, capsys):
    src = clip("in.mkv", width=32, height=24, frames=2)
    out = str(tmp_path / "out.mkv")
    assert main([src.as_posix(), out, "--preset", "fast-preview", "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["model"]["name"], plan["model"]["scale"]) == ("espcn", 2)
    assert dict(plan["output"]["codec_options"])["preset"] == "veryfast"
    assert main([src.as_posix(), out, "--preset", "fast-preview", "--crf", "30",
                 "--encoder-preset", "fast", "--dry-run", "--json"]) == 0
    options = dict(json.loads(capsys.readouterr().out)["output"]["codec_options"])
    assert (options["crf"], options["preset"]) == ("30", "fast")


def test_a_switch_in_a_preset_can_be_turned_off(clip, tmp_path, capsys):
    from fractions import Fraction

    src = clip("in.mkv", width=32, height=24, frames=2, sar=Fraction(16, 11))
    mine = tmp_path / "mine.toml"
    mine.write_text('description = "mine"\n[options]\nmodel = "nearest"\nscale = 2\n'
                    'square-pixels = true\n')
    command = [src.as_posix(), str(tmp_path / "out.mkv"), "--preset", str(mine), "--dry-run",
               "--json"]
    assert main(command) == 0
    assert json.loads(capsys.readouterr().out)["output"]["width"] == 94
    assert main([*command, "--no-square-pixels"]) == 0
    assert json.loads(capsys.readouterr().out)["output"]["width"] == 64


@pytest.mark.parametrize(("toml", "message"), [
    ('[options]\nsharpness = 3\n', "unknown key 'sharpness' (a preset sets the model, engine"
                                   " and encoding options of `vidsr`)"),
    ('colour = "red"\n', "unknown key 'colour'"),
    ('[options]\nsquare-pixels = "yes"\n', "square-pixels must be true or false"),
    ('[options\n', "not a readable TOML preset"),
    # A bad value names the file and the key, not only the option it stands for.
    ('[options]\nscale = "x"\n', "bad.toml: scale = x: expected a whole number, got 'x'"),
    ('[options]\nprecision = "fp8"\n', "bad.toml: precision = fp8: invalid choice: 'fp8'"),
    ('[options]\nencoder-opt = ["tune"]\n',
     "bad.toml: encoder-opt = [tune]: expected KEY=VALUE, got 'tune'"),
    # What only a command line may say.
    ('[options]\nffmpeg = "./evil.sh"\n', "bad.toml: a preset may not set 'ffmpeg' (it names a"
                                          " program to run); give --ffmpeg on the command line"),
    ('[options]\noverwrite = true\n', "bad.toml: a preset may not set 'overwrite' (it replaces"
                                      " existing files); give --overwrite on the command line"),
    ('[options]\nallow_unsafe_weights = true\n', "bad.toml: a preset may not set"
     " 'allow_unsafe_weights' (it lets a weights file run code); give --allow-unsafe-weights on"
     " the command line"),
    ('[options]\nencoder-opt = ["tune=grain", "stats=/tmp/x.log"]\n', "bad.toml: a preset may"
     " not set the encoder option 'stats' (it names a file); give --encoder-opt on the command"
     " line"),
    ('[options]\nencoder_opt = "x265-params=crf=20:csv=frames.csv"\n', "bad.toml: a preset may"
     " not set the encoder option 'x265-params: csv' (it names a file)"),
    ('[options]\nreport = "/tmp/x.json"\n', "bad.toml: unknown key 'report'"),
    ('[options]\ndry-run = true\n', "bad.toml: unknown key 'dry-run'"),
])
def test_bad_preset_files_are_one_error_naming_the_file(tmp_path, capsys, toml, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    with pytest.raises(OptionsError, match=str(bad).replace(".", r"\.")):
        preset_values(load_preset(bad))
    with pytest.raises(SystemExit) as stop:
        main(["in.mp4", "out.mkv", "--preset", str(bad)])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_names_list_the_bundled_presets(capsys):
    with pytest.raises(OptionsError, match="unknown preset 'vhs' .bundled: anime, archival-sd"):
        load_preset("vhs")
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    assert "archival-sd: " in listing and "square-pixels=true, height=1080" in listing


def test_vidsr_batch_takes_a_preset_for_every_file(clip, tmp_path):
    from fractions import Fraction

    from vidsr.io.probe import probe

    src = tmp_path / "tapes"
    src.mkdir()
    clip("tapes/a.mkv", width=32, height=24, frames=2, sar=Fraction(16, 11))
    preset = tmp_path / "square.toml"
    preset.write_text('[options]\nmodel = "nearest"\nscale = 2\nsquare-pixels = true\n'
                      'codec = "libx264"\n')
    out = tmp_path / "out"
    assert main(["batch", str(src), str(out), "--preset", str(preset), "--no-progress",
                 "-q"]) == 0
    result = probe(out / "a.mkv")
    assert (result.width, result.height, result.sar) == (94, 48, 1)


@pytest.mark.parametrize("command", [[], ["batch"]], ids=["vidsr", "vidsr batch"])
def test_a_preset_never_runs_a_program(clip, tmp_path, capsys, command):
    src = clip("in.mkv", width=32, height=24, frames=2)
    ran = tmp_path / "ran"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {ran}\nexec ffmpeg \"$@\"\n")
    evil.chmod(0o755)
    preset = tmp_path / "shared.toml"
    preset.write_text(f'[options]\nmodel = "nearest"\nscale = 2\nffmpeg = "{evil}"\n')
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main([*command, str(src), str(out / "o.mkv" if not command else out), "--preset",
              str(preset), "--no-progress"])
    assert stop.value.code == 2
    assert "a preset may not set 'ffmpeg'" in capsys.readouterr().err
    assert not ran.exists() and not out.exists()


def test_a_csv_cell_is_only_ever_a_value(clip, tmp_path, capsys):
    src = tmp_path / "a.mkv"
    clip("a.mkv", width=32, height=24, frames=2)
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"path,model\n{src},--ffmpeg\n")
    assert main(["batch", str(manifest), str(tmp_path / "out"), "--no-progress"]) == 1
    assert "failed: unknown model '--ffmpeg'" in capsys.readouterr().err

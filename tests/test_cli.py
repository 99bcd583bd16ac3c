"""The ``vidsr`` command: one clear line per bad input, the exit code, and nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from clipgen import damage_clip, make_audio_only, make_streams_clip
from safetensors.torch import load_file, save_file
from vidsr_process import SLOW_RUN, start_vidsr, temporaries, wait_for

from vidsr.__main__ import main

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
ESPCN_X2 = REPO / "vidsr" / "weights" / "espcn_opencv_x2.safetensors"


def run(args: list[str], capsys) -> tuple[int, str]:
    code = main([*args, "--no-progress"] if args and args[0] not in ("models", "eval") else args)
    err = capsys.readouterr().err
    return code, err


def assert_one_error_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no message"
    assert lines[0].startswith("vidsr: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def source(clip):
    return clip("in.mkv", frames=4)


def test_demo_style_run_prints_a_summary(source, tmp_path, capsys):
    dst = tmp_path / "out.mp4"
    code, err = run([str(source), str(dst), "--model", "nearest", "--scale", "2"], capsys)
    assert code == 0
    assert dst.is_file()
    assert f"{dst}: 4 frames at 128x96" in err and "fps" in err and "MiB" in err


def test_encoder_settings_reach_x264(source, tmp_path, capsys):
    dst = tmp_path / "out.mp4"
    code, _ = run([str(source), str(dst), "--model", "nearest", "--scale", "2",
                   "--crf", "31", "--encoder-preset", "ultrafast"], capsys)
    assert code == 0
    # x264 writes its settings into the stream: ultrafast turns CABAC and sub-pel search off.
    settings = dst.read_bytes()
    assert b"cabac=0" in settings and b"subme=0" in settings and b"crf=31.0" in settings


def test_missing_input(tmp_path, capsys):
    code, err = run([str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4")], capsys)
    assert code == 1
    assert_one_error_line(err, "missing.mp4", "no such file")
    assert not (tmp_path / "o.mp4").exists()


def test_not_a_video(tmp_path, capsys):
    bogus = tmp_path / "notes.mp4"
    bogus.write_bytes(os.urandom(4096))
    code, err = run([str(bogus), str(tmp_path / "o.mp4")], capsys)
    assert code == 1
    assert_one_error_line(err, "notes.mp4")
    assert not (tmp_path / "o.mp4").exists()


def test_audio_only_file(tmp_path, capsys):
    path = make_audio_only(tmp_path / "song.flac")
    code, err = run([str(path), str(tmp_path / "o.mp4")], capsys)
    assert code == 1
    assert_one_error_line(err, "song.flac", "no video stream")


def test_cover_art_alone_or_chosen_is_no_video(tmp_path, capsys):
    # D25: a song's cover art was decoded as a 0-second video, "file truncated?".
    song = make_streams_clip(tmp_path / "song.m4a", videos=[], cover=True, audio=True)
    code, err = run([str(song), str(tmp_path / "o.mp4"), "--model", "nearest"], capsys)
    assert code == 1
    assert_one_error_line(err, "song.m4a: has no video stream (only cover art)")
    clip = make_streams_clip(tmp_path / "clip.mp4", videos=[(64, 48, True)], cover=True)
    code, err = run([str(clip), str(tmp_path / "o.mp4"), "--model", "nearest",
                     "--video-stream", "1"], capsys)
    assert code == 1
    assert_one_error_line(err, "clip.mp4: stream #1 (video, mjpeg) is cover art, not a video;"
                               " choose another --video-stream")
    assert not (tmp_path / "o.mp4").exists()


def _damaged(clip, kind: str) -> Path:
    path = clip("damaged.mkv", width=64, height=48, frames=30, content="noise")
    return damage_clip(path, cut=kind == "truncated")


@pytest.mark.parametrize("kind", ["truncated", "corrupt"])
def test_damaged_input_fails_by_default_and_leaves_nothing(clip, tmp_path, capsys, kind):
    src = _damaged(clip, kind)
    dst = tmp_path / "o.mkv"
    code, err = run([str(src), str(dst), "--model", "nearest", "--scale", "2"], capsys)
    assert code == 1
    assert_one_error_line(err, "damaged.mkv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.mkv"]


def test_corrupt_input_with_skip_reports_replaced_frames(clip, tmp_path, capsys):
    src = _damaged(clip, "corrupt")
    dst = tmp_path / "o.mkv"
    code, err = run([str(src), str(dst), "--model", "nearest", "--scale", "2",
                     "--on-error", "skip"], capsys)
    assert code == 0, err
    assert dst.is_file()
    assert "undecodable frames replaced" in err


def test_unknown_model_suggests(source, tmp_path, capsys):
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--model", "esrgan_rrbd"], capsys)
    assert code == 2  # a usage error, as any wrong option value
    assert_one_error_line(err, "unknown model 'esrgan_rrbd'")
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--model", "espnc"], capsys)
    assert_one_error_line(err, "did you mean espcn")


def test_unsupported_scale(source, tmp_path, capsys):
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--model", "espcn", "--scale", "8"],
                    capsys)
    assert code == 2
    assert_one_error_line(err, "'espcn' supports x2, x3, x4, not x8")


def test_weights_that_do_not_fit_name_the_key_and_shapes(source, tmp_path, capsys):
    state = load_file(str(ESPCN_X2))
    state["f2"] = torch.zeros(32, 64, 5, 5)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--model", "espcn", "--weights",
                     str(bad)], capsys)
    assert code == 1
    assert_one_error_line(err, "bad.safetensors", "(32, 64, 5, 5)", "(32, 64, 3, 3)")
    assert not (tmp_path / "o.mkv").exists()


def test_weights_of_another_architecture(source, tmp_path, capsys):
    vdsr = REPO / "vidsr" / "weights" / "vdsr_twtygqyy.safetensors"
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--model", "espcn", "--weights",
                     str(vdsr)], capsys)
    assert code == 1
    assert_one_error_line(err, "holds a vdsr network, not the espcn")


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (real weights)")
def test_unsafe_pickle_is_refused_with_an_explanation(source, tmp_path, capsys):
    legacy = SHARED / "weights" / "vdsr" / "model_epoch_50.pth"
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--model", "vdsr", "--weights",
                     str(legacy)], capsys)
    assert code == 1
    assert_one_error_line(err, "model_epoch_50.pth", "--allow-unsafe-weights")


def test_existing_output_needs_overwrite(source, tmp_path, capsys):
    dst = tmp_path / "o.mkv"
    dst.write_bytes(b"keep me")
    code, err = run([str(source), str(dst), "--model", "nearest", "--scale", "2"], capsys)
    assert code == 1
    assert err.splitlines()[-1] == f"vidsr: error: {dst}: already exists (use --overwrite to" \
                                   " replace it)"
    assert dst.read_bytes() == b"keep me"


def test_messages_name_options_as_the_reader_sets_them():
    # Library messages name options with option(): the vidsr command's flags while it runs,
    # Python's keywords elsewhere (the API, vsvidsr).
    from vidsr.errors import command_line_spelling, option

    assert (option("on_error", "skip"), option("overwrite")) == ("on_error='skip'",
                                                                 "overwrite=True")
    with command_line_spelling():
        assert (option("on_error", "skip"), option("overwrite")) == ("--on-error skip",
                                                                     "--overwrite")
    assert option("on_error", "skip") == "on_error='skip'"


def test_fp16_on_cpu_is_refused(source, tmp_path, capsys):
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--device", "cpu",
                     "--precision", "fp16"], capsys)
    assert code == 2
    assert_one_error_line(err, "fp16")


def test_cpu_workers_and_threads_are_taken_and_checked(source, tmp_path, capsys):
    dst = tmp_path / "o.mkv"
    code, _ = run([str(source), str(dst), "--model", "espcn", "--scale", "2", "--device", "cpu",
                   "--cpu-workers", "3", "--threads", "1"], capsys)
    assert code == 0 and dst.is_file()
    code, err = run([str(source), str(tmp_path / "p.mkv"), "--device", "cpu",
                     "--cpu-workers", "-1"], capsys)
    assert code == 2
    assert_one_error_line(err, "must be at least 1")
    assert not (tmp_path / "p.mkv").exists()


def test_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("nearest", "bicubic", "espcn", "vdsr", "realesr-animevideov3",
                 "realesrgan-x4plus"):
        assert f"\n{name} " in out
    espcn = next(line for line in out.splitlines() if line.startswith("espcn "))
    assert "luma" in espcn and "x2,x3,x4" in espcn and "bundled" in espcn


def test_ctrl_c_stops_cleanly_and_leaves_nothing(clip, tmp_path):
    src = clip("long.mkv", width=96, height=64, frames=120, content="noise")
    dst = tmp_path / "o.mkv"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidsr", str(src), str(dst), "--model", "vdsr", "--scale", "4",
         "--batch-size", "1", "--no-progress"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    deadline = time.monotonic() + 60
    # Wait until the run has started writing (its temporary file exists), then interrupt.
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(".o.mkv.vidsr-") for p in tmp_path.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mkv"]


def _image_folder(path: Path, count: int = 3, size: int = 64) -> Path:
    import numpy as np
    from PIL import Image

    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        smooth = np.linspace(0, 255, size)[None, :, None] * np.ones((size, 1, 3))
        noisy = (smooth + rng.normal(0, 20, smooth.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(path / f"img{i}.png")
    return path


def test_train_then_resume_then_interpolate(tmp_path, capsys):
    data = _image_folder(tmp_path / "data")
    run_dir = tmp_path / "run"
    tiny = ["--set", "train.total_steps=2", "--set", "data.batch_size=2",
            "--set", "train.checkpoint_every=2", "--set", "train.progress=false"]
    code = main(["train", "--preset", "espcn", "--data", str(data), "--out", str(run_dir), *tiny])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "stopped at step 2" in err
    tiny[1] = "train.total_steps=4"
    code = main(["train", "--preset", "espcn", "--data", str(data), "--out", str(run_dir),
                 "--resume", *tiny])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "stopped at step 4" in err

    # Interpolating a network with itself at any alpha gives it back.
    out = tmp_path / "blend.safetensors"
    code = main(["interpolate", str(ESPCN_X2), str(ESPCN_X2), "--alpha", "0.3", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    from vidsr.archs import load_arch_from_state_dict
    from vidsr.models.weights_file import read_state_dict

    blended = load_arch_from_state_dict(read_state_dict(out)).state_dict()
    original = load_arch_from_state_dict(read_state_dict(ESPCN_X2)).state_dict()
    assert blended.keys() == original.keys()
    assert all(torch.equal(blended[k], original[k]) for k in original)


def test_train_unknown_preset_names_the_bundled_ones(tmp_path, capsys):
    code = main(["train", "--preset", "esrgan-psnrr", "--data", str(tmp_path), "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert_one_error_line(err, "unknown training preset 'esrgan-psnrr'", "esrgan-psnr")


def test_dry_run_prints_the_plan_as_json_and_bench_runs_that_plan(tmp_path, capsys):
    sample = REPO / "vidsr" / "samples" / "bbb_2s.mp4"
    dst = tmp_path / "out.mkv"
    code = main([str(sample), str(dst), "--dry-run", "--json"])
    out = capsys.readouterr().out
    assert code == 0 and not dst.exists() and list(tmp_path.iterdir()) == []
    plan = json.loads(out)
    assert plan["model"]["name"] == "compact" and plan["source"]["path"] == str(sample)
    report_path = tmp_path / "bench.json"
    code = main(["bench", str(sample), "--model", "compact", "--frames", "2", "--no-serial",
                 "--json", str(report_path)])
    printed = capsys.readouterr().out
    assert code == 0 and printed.startswith("plan (what `vidsr IN OUT` runs")
    measured = json.loads(report_path.read_text())["plan"]
    # The bench cut its clip and writes into a scratch folder; every decision is the same.
    for key in ("machine", "model", "devices", "precision", "channels_last", "executor",
                "batch_size", "tile", "decoder_threads"):
        assert measured[key] == plan[key], key
    for key in ("container", "width", "height", "layout", "codec_pix_fmt", "colour", "sar",
                "time_base", "encode", "codec_options", "sink", "streams"):
        assert measured["output"][key] == plan["output"][key], key


def test_json_without_dry_run_is_a_usage_error(source, tmp_path, capsys):
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--json"], capsys)
    assert code == 2 and not (tmp_path / "o.mkv").exists()
    assert_one_error_line(err, "--json goes with --dry-run")


def test_exit_codes_usage_2_failure_1_interrupted_128_plus_signal(clip, tmp_path, capsys):
    src = clip("long.mkv", width=96, height=64, frames=40, content="noise")
    dst = tmp_path / "o.mkv"
    # Usage errors: argparse's, in a real process, and vidsr's OptionsError (a model or
    # scale that does not exist among them).
    usage = subprocess.run([sys.executable, "-m", "vidsr", str(src), str(dst), "--scale", "0"],
                           capture_output=True, text=True, cwd=REPO)
    assert usage.returncode == 2
    assert usage.stderr.splitlines()[-1] == ("vidsr: error: argument --scale: must be at"
                                             " least 1, got 0")
    for args in ([str(src), str(dst), "--json"],
                 [str(src), str(dst), "--device", "cpu", "--precision", "fp16"],
                 [str(src), str(dst), "--codec", "aac"],
                 [str(src), str(dst), "--model", "nosuch"],
                 [str(src), str(dst), "--model", "espcn", "--scale", "8"]):
        assert run(args, capsys)[0] == 2, args
    assert main(["bench", str(src), "--ffmpeg"]) == 2
    # Failures: the input, the model, the weights.
    fifo = tmp_path / "pipe.mkv"
    os.mkfifo(fifo)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(1024))
    for args in ([str(tmp_path / "missing.mkv"), str(dst)],
                 [str(fifo), str(dst)],
                 [str(src), str(dst), "--model", str(junk)]):
        assert run(args, capsys)[0] == 1, args
    assert not dst.exists()
    # Interrupted: 128 + the signal's number, as shells report a process a signal ended
    # (Ctrl-C, SIGINT: 130; see also test_ctrl_c_stops_cleanly_and_leaves_nothing).
    proc = start_vidsr(src, dst, *SLOW_RUN)
    wait_for(proc, lambda: temporaries(dst))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM == 143, err
    assert err.strip() == "vidsr: interrupted by SIGTERM; no output written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pth", "long.mkv", "pipe.mkv"]


def test_messages_read_cleanly(source, tmp_path, capsys):
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--model", "nosuch"], capsys)
    assert code == 2
    assert err.startswith("vidsr: error: unknown model 'nosuch' (known: ")
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--codec", "aac"], capsys)
    assert err == "vidsr: error: 'aac' is an encoder for audio streams, not video ones\n"
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--model", "vdsr", "--weights",
                     str(ESPCN_X2)], capsys)
    assert_one_error_line(err, "holds an espcn network, not the vdsr")


def test_junk_weights_are_not_offered_the_unsafe_flag(source, tmp_path, capsys):
    junk = tmp_path / "model.pth"
    junk.write_bytes(b"<html>404 Not Found</html>\n")  # what a failed download leaves
    code, err = run([str(source), str(tmp_path / "o.mkv"), "--model", str(junk)], capsys)
    assert code == 1
    assert err == (f"vidsr: error: {junk}: not a weights file PyTorch or safetensors can read"
                   " (neither a zip archive nor a pickle)\n")


def test_names_that_look_like_urls_are_local_files(clip, tmp_path, monkeypatch, capsys):
    clip("made.mkv", frames=3, audio=True).rename(tmp_path / "http:in.mkv")
    monkeypatch.chdir(tmp_path)
    code, err = run(["http:in.mkv", "rtmp:out.mkv", "--model", "nearest", "--scale", "2"],
                    capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["http:in.mkv", "rtmp:out.mkv"]
    assert (tmp_path / "rtmp:out.mkv").stat().st_size > 0


@pytest.mark.parametrize("codec", ["libx265", "libsvtav1"])
def test_quiet_keeps_encoder_banners_off_stderr(clip, tmp_path, codec):
    # x265 and SVT-AV1 write their banners to file descriptor 2 themselves. A process of its
    # own, as a real run is: SVT-AV1 reads its log level once per process, so an encoder an
    # earlier test opened in this one would decide it.
    src = clip("in.mkv", width=64, height=48, frames=3)
    env = {k: v for k, v in os.environ.items() if k != "SVT_LOG"}
    run = subprocess.run([sys.executable, "-m", "vidsr", str(src), str(tmp_path / "o.mkv"),
                          "--model", "nearest", "--scale", "2", "--codec", codec,
                          "--no-progress", "-q"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0 and (tmp_path / "o.mkv").is_file()
    assert run.stderr == ""

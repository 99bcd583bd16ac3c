"""`vidsr batch --engine ray` against a real Ray cluster on loopback (``ray start --head``,
started and stopped here): the same outputs as the local engine, a window model's segments
equal to a whole-file run, an actor killed while it holds a segment, and a driver killed
mid-job."""

from __future__ import annotations

import gc
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import (
    batch,
    check_window_segments,
    job,
    needs_ffprobe,
    packet_times,
    probe_streams,
    report,
    same_frames,
)
from clipgen import make_clip
from vidsr_process import start_vidsr, wait_for

from vidsr.commands.batch import BatchOptions, FileRun, run_batch
from vidsr.plan.run_plan import EngineOptions

# Ray reads these when it is imported: no usage reports, and token authentication with a
# token of the tests' own for the cluster and every driver, whatever ~/.ray holds.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
ray = pytest.importorskip("ray", reason="needs Ray (pip install 'vidsr[ray]')")

# vdsr at one frame a batch: a segment of 12 frames takes a second or two here, long
# enough for an actor (or the driver) to be caught holding one.
SLOW = ("--model", "vdsr", "--scale", "2", "--batch-size", "1", "--no-progress",
        "--segment-seconds", "0.4")
SLOW_RUN = FileRun(model="vdsr", scale=2, engine=EngineOptions(batch_size=1))


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster with 2 CPUs on 127.0.0.1; its address."""
    ray_cli = Path(sys.executable).with_name("ray")
    # Short: Ray's socket paths under it must stay within the 107 bytes a socket name has.
    temp = tempfile.mkdtemp(prefix="vray", dir="/tmp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)  # the token above, for the cluster and the drivers it starts
    # --block keeps `ray start` running while its cluster runs, in a session of its own:
    # ending that session ends this cluster only. (`ray stop --force` ended every Ray on the
    # machine, another test run's and a user's own included.)
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_port(head, port)
        yield f"127.0.0.1:{port}"
    finally:
        _end_session(head)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_port(head: subprocess.Popen, port: int, timeout: float = 300) -> None:
    """Until the head node takes connections on ``port`` (minutes on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise AssertionError(f"ray start --head ended with {head.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the Ray head node did not listen on {port} within {timeout:.0f} s")


def _end_session(head: subprocess.Popen) -> None:
    """End ``ray start --block`` and every process of its session: the cluster's."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        try:
            head.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # `ray start` has ended; what it started may still be going down.
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def _sources(root, frames=48, long_name="a"):
    """One clip long enough for four segments at --segment-seconds 0.4, two short ones."""
    root.mkdir()
    make_clip(root / f"{long_name}.mkv", width=64, height=48, frames=frames,
              content="moving", gop=6, audio=True, subtitles=True, chapters=[(0, 1, "one")])
    make_clip(root / "b.mp4", width=64, height=48, frames=10, content="moving")
    make_clip(root / "c.mov", width=32, height=32, frames=12)


def _same_outputs(a, b):
    for name in ("a.mkv", "b.mkv", "c.mkv"):
        assert same_frames(a / name, b / name), name


@needs_ffprobe
def test_ray_writes_what_the_local_engine_writes(tmp_path, capsys, cluster):
    src = tmp_path / "src"
    _sources(src)
    fast = ("--model", "nearest", "--scale", "2", "--no-progress", "--segment-seconds", "0.4")
    code, err = batch(capsys, src, tmp_path / "ray", *fast, "--engine", "ray", "--address",
                      cluster, "--ray-actors", "2")
    assert code == 0, err
    assert batch(capsys, src, tmp_path / "local", *fast)[0] == 0
    _same_outputs(tmp_path / "ray", tmp_path / "local")
    for name in ("a.mkv", "b.mkv", "c.mkv"):  # timestamps, streams, chapters, metadata
        ray_out, local_out = tmp_path / "ray" / name, tmp_path / "local" / name
        assert probe_streams(ray_out) == probe_streams(local_out), name
        assert packet_times(ray_out) == packet_times(local_out), name
    rows = {Path(r["source"]).name: r for r in report(tmp_path / "ray")["files"]}
    assert rows["a.mkv"]["segments"] == 4 and rows["b.mp4"]["segments"] == 0
    assert not ray.is_initialized()  # the batch let go of the cluster it joined


def test_a_window_models_segments_on_actors_equal_a_whole_file_run(tmp_path, capsys, cluster,
                                                                    temporal):
    """Each segment decodes its context on the actor, as a local segment does: the joined
    output is ``vidsr``'s on the whole file frame for frame, a cut on a boundary included."""
    check_window_segments(tmp_path, capsys, temporal, "--engine", "ray", "--address", cluster,
                          "--ray-actors", "2")


def test_an_actor_killed_holding_a_segment_has_it_redone_elsewhere(tmp_path, capsys, caplog,
                                                                   cluster):
    from vidsr.commands.batch.ray_engine import NAMESPACE, RayOptions

    src, out = tmp_path / "src", tmp_path / "out"
    _sources(src)
    ended: dict[str, object] = {}

    def drive():
        try:
            ended["result"] = run_batch(src, out, lambda _: SLOW_RUN, BatchOptions(
                progress=False, segment_seconds=0.4, ray=RayOptions(address=cluster, actors=2)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            ended["error"] = exc

    driver = threading.Thread(target=drive)
    driver.start()
    def dealt():
        return ((out / "vidsr-job.json").exists()
                and job(out).get(str(src / "a.mkv"), {}).get("segments"))

    # Minutes, not seconds: on a loaded 2-core machine the actors take long to start.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.is_alive() and not dealt():
        time.sleep(0.05)
    assert dealt(), f"a.mkv's segments were never dealt: {ended}"
    # Both actors hold segments now (all four were dealt at once): kill one.
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == NAMESPACE]
    ray.kill(ray.get_actor(sorted(names)[0], namespace=NAMESPACE))
    # Generous: on a loaded 2-core machine the four segments of vdsr take minutes.
    driver.join(timeout=600)
    assert not driver.is_alive(), "the batch did not end within 10 minutes"
    assert "error" not in ended, repr(ended.get("error"))
    result = ended["result"]
    assert result.ok, result
    row = next(f for f in result.files if f.source.endswith("a.mkv"))
    assert row.outcome == "done" and row.retries >= 1
    assert "a Ray worker died" in caplog.text
    code, err = batch(capsys, src, tmp_path / "local", *SLOW)
    assert code == 0, err
    _same_outputs(out, tmp_path / "local")


def _some_segments_done(out):
    try:
        entries = json.loads((out / "vidsr-job.json").read_text())["files"]
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    for entry in entries.values():
        segments = entry.get("segments")
        if segments and 0 < len(segments["done"]) < len(segments["cuts"]):
            return entry
    return None


def test_a_driver_killed_mid_job_resumes_from_the_job_file(tmp_path, capsys, cluster):
    src, out = tmp_path / "src", tmp_path / "out"
    # Eight segments, after the two short files: the driver is caught between two.
    _sources(src, frames=96, long_name="z")
    args = ("batch", src, out, *SLOW, "--engine", "ray", "--address", cluster,
            "--ray-actors", "1")
    proc = start_vidsr(*args)
    # Minutes: the driver, its actor and the two short files come first, on a loaded
    # machine too (90 s ran out there).
    wait_for(proc, lambda: _some_segments_done(out), timeout=300)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    before = job(out)
    kept = before[str(src / "z.mkv")]["segments"]["done"]
    done_files = {k for k, e in before.items() if e["state"] == "done"}
    assert done_files == {str(src / "b.mp4"), str(src / "c.mov")}

    code, err = batch(capsys, *args[1:])

    assert code == 0, err
    rows = {r["source"]: r for r in report(out)["files"]}
    assert rows[str(src / "z.mkv")]["segments_reused"] == len(kept) > 0
    assert all(rows[k]["outcome"] == "skipped" for k in done_files)
    assert all(e["state"] == "done" for e in job(out).values())
    assert not (out / ".vidsr-segments").exists()


def test_one_plan_gives_the_same_frames_on_every_path(tmp_path, cluster):
    """One plan, made once, run four ways: the transcoder, segments joined into one file
    (lossless, so every frame can be compared), the VapourSynth filter, and a Ray actor
    that receives the plan as JSON. Every way gives the same frames."""
    vs = pytest.importorskip("vapoursynth", reason="needs VapourSynth")
    vsvidsr = pytest.importorskip("vsvidsr", reason="vsvidsr is installed by pip install -e .")
    from vidsr.commands.batch.ray_engine import SegmentWorker
    from vidsr.commands.batch.segments import join_segments, plan_segments, run_segment
    from vidsr.engine.engine import Engine
    from vidsr.io.colour import MATRIX_NAMES, code_of
    from vidsr.io.decode import Decoder
    from vidsr.io.encode_options import EncodeOptions
    from vidsr.io.keyframes import scan_keyframes
    from vidsr.plan.run_plan import RunPlan
    from vidsr.run.transcode import RunControl, plan_file, run_to_file

    src = tmp_path / "in.mkv"
    make_clip(src, width=64, height=48, frames=24, content="moving", gop=6)
    model, plan = plan_file(src, tmp_path / "whole.mkv", model="espcn", scale=2,
                            engine=EngineOptions(device="cpu", precision="fp32"),
                            encode=EncodeOptions(codec="ffv1"))
    assert plan.source is not None and plan.output is not None

    def planned_to(name: str) -> RunPlan:
        assert plan.output is not None
        return replace(plan, output=replace(plan.output, path=tmp_path / name))

    def planes(path: Path) -> list[np.ndarray]:
        with Decoder(path, batch_size=64) as decoder:
            batches = list(decoder)
        return [np.concatenate([b.planes[p] for b in batches]) for p in range(3)]

    run_to_file(plan, model, RunControl(progress=False))
    whole = planes(tmp_path / "whole.mkv")
    assert whole[0].shape == (24, 96, 128)

    segmented = planned_to("segments.mkv")
    segments = plan_segments(scan_keyframes(src, plan.source.stream_index), 0.2)
    assert len(segments) >= 2
    paths = [tmp_path / segment.file_name for segment in segments]
    with Engine(model, segmented) as engine:
        for segment, path in zip(segments, paths, strict=True):
            run_segment(engine, segmented, segment, path, depth=3)
    join_segments(segmented, paths, overwrite=False)

    colour = plan.source.colour
    props = {"_Matrix": code_of(MATRIX_NAMES, colour.matrix), "_Range": int(colour.full_range)}
    blank = vs.core.std.BlankClip(width=64, height=48, format=vs.YUV420P8, length=24,
                                  fpsnum=25, fpsden=1)
    with Decoder(src, batch_size=64) as decoder:
        frames = [p for batch in decoder for p in zip(*batch.planes, strict=True)]

    def filled(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p, plane in enumerate(frames[n]):
            np.asarray(out[p])[...] = plane
        out.props.update(props)
        return out

    clip = vs.core.std.ModifyFrame(blank, blank, filled)
    up = vsvidsr.upscale(clip, model, plan=RunPlan.from_json(plan.to_json()))
    filtered = [np.stack([np.asarray(f[p]) for f in up.frames()]) for p in range(3)]
    # The filter's engine ends with its clip; the clip's frame callback makes a reference
    # cycle, so only a collection frees it, and later tests count the engine threads left.
    del up, clip
    gc.collect()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and any(
            t.name.startswith(("vsvidsr-dispatch", "vidsr-cpu-worker"))
            for t in threading.enumerate()):
        time.sleep(0.02)
    assert not [t for t in threading.enumerate() if t.name.startswith("vidsr-cpu-worker")]

    ray.init(address=cluster, logging_level=logging.WARNING)
    try:
        actor = ray.remote(SegmentWorker).options(num_cpus=1).remote()
        sent = RunPlan.from_json(planned_to("ray.mkv").to_json())
        ray.get(actor.run_whole.remote(FileRun(model="espcn", scale=2), sent,
                                       RunControl(progress=False)),
                timeout=600)
        ray.kill(actor)
    finally:
        ray.shutdown()

    for name, got in (("segments", planes(tmp_path / "segments.mkv")),
                      ("vsvidsr", filtered), ("ray", planes(tmp_path / "ray.mkv"))):
        assert all(np.array_equal(g, w) for g, w in zip(got, whole, strict=True)), name

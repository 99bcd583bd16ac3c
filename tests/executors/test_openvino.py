"""The OpenVINO executor: same frames as torch, tiles and odd sizes, the cache, int8 and its
gate, `--runtime auto`, a clear line without the extra, `vidsr bench` comparing runtimes, and
window models (their frames stacked on channels)."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from clipgen import decoded_frames, shot_frames, write_ffv1
from engines import engine_for

from vidsr.__main__ import main
from vidsr.archs import create_arch
from vidsr.commands.bench import BenchOptions, run_bench, runtime_comparison
from vidsr.commands.export import SAMPLE_CLIP
from vidsr.errors import OptionsError
from vidsr.executors.onnx_export import node_scope
from vidsr.executors.openvino import calibration_inputs, faster_plan, onnx_for
from vidsr.io.decode import Decoder
from vidsr.io.encode_options import EncodeOptions
from vidsr.models.zoo import SRModel, load_model
from vidsr.plan.machine import this_machine
from vidsr.plan.precision import MeasuredLoss, choose_precision
from vidsr.plan.run_plan import EngineOptions, OpenVinoOptions, OpenVinoPlan, resolve_plan
from vidsr.run.transcode import RunControl, plan_upscale, upscale_video

pytest.importorskip("openvino", reason="the OpenVINO executor needs vidsr[openvino]")

FP32_OV = EngineOptions(device="cpu", precision="fp32", runtime="openvino")
FP32_TORCH = EngineOptions(device="cpu", precision="fp32")


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch) -> Path:
    """One cache dir for the module: exported networks are shared by its tests."""
    path = tmp_path_factory.getbasetemp() / "openvino-cache"
    monkeypatch.setenv("VIDSR_CACHE_DIR", str(path))
    return path


def _tiny_compact(seed: int = 0) -> SRModel:
    torch.manual_seed(seed)
    return SRModel.from_module(create_arch("compact", num_feat=8, num_conv=2, scale=2).eval(), 2)


def _upscaled(model: SRModel, options: EngineOptions, src: Path,
              batches: int | None = None) -> list[list[np.ndarray]]:
    """The engine's output planes for the first ``batches`` batches of two frames of ``src``."""
    with Decoder(src, batch_size=2) as decoder, engine_for(model, options) as engine:
        colour = decoder.info.colour
        return [engine.upscale_batch(batch, colour, batch.layout).planes
                for batch, _ in zip(decoder, range(batches or 1 << 30), strict=False)]


def _largest_difference(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> int:
    return max(int(np.abs(x.astype(int) - y.astype(int)).max())
               for planes_a, planes_b in zip(a, b, strict=True)
               for x, y in zip(planes_a, planes_b, strict=True))


def test_frames_of_a_real_clip_equal_torch_within_one_code_value():
    model = load_model("compact", scale=2)
    torch_planes = _upscaled(model, FP32_TORCH, SAMPLE_CLIP, batches=1)
    assert torch_planes[0][0].shape == (2, 720, 1280)
    assert _largest_difference(_upscaled(model, FP32_OV, SAMPLE_CLIP, batches=1),
                               torch_planes) <= 1


def test_tiles_through_openvino_equal_whole_frames_within_one_code_value(clip):
    src = clip("moving.mkv", width=64, height=48, frames=4, content="moving")
    model = load_model("compact", scale=2)
    torch_planes = _upscaled(model, FP32_TORCH, src)
    assert torch_planes[0][0].shape == (2, 96, 128) and len(torch_planes) == 2
    # 24-pixel tiles with the model's overlap: corner, edge and core tiles of other sizes.
    tiled = EngineOptions(device="cpu", precision="fp32", runtime="openvino", tile=24)
    assert _largest_difference(_upscaled(model, tiled, src), torch_planes) <= 1


def test_odd_sizes_and_tiles_of_a_luma_model_in_model_space():
    model = load_model("espcn", scale=3)
    x = torch.rand(2, 1, 37, 29)
    with engine_for(model, FP32_TORCH) as engine:
        expected = engine.run_network(x)
    tiled = EngineOptions(device="cpu", precision="fp32", runtime="openvino", tile=16)
    with engine_for(model, tiled) as engine:
        got = engine.run_network(x)
        shapes = set(engine.executor.network.compiled_shapes)
    assert got.shape == (2, 1, 111, 87)
    assert float((got - expected).abs().max()) < 1e-5
    assert len(shapes) >= 4  # tiles of several sizes, each compiled once


def test_network_is_exported_once_per_weights_and_scale(cache):
    model = _tiny_compact()
    with engine_for(model, FP32_OV) as engine:
        first = engine.executor.network.model_path
    assert first.parent == cache / "openvino" and first.suffix == ".onnx"
    written = first.stat().st_mtime_ns
    with engine_for(model, FP32_OV) as engine:
        assert engine.executor.network.model_path == first
    assert first.stat().st_mtime_ns == written  # not exported again
    with engine_for(_tiny_compact(seed=1), FP32_OV) as engine:
        assert engine.executor.network.model_path != first  # other weights, other file


@pytest.mark.skipif(not this_machine().native_bf16,
                    reason="OpenVINO runs bf16 only on a CPU with native bf16 (AVX-512 BF16, AMX)")
def test_openvino_bf16_adds_the_skip_picture_in_f32():
    """With the residual zeroed the network is its skip, nearest(input): in bf16 the
    convolutions round, but the picture the skip adds must not (OpenVINO ran a Resize in
    bf16, holding it to 8 significant bits: up to a code value on bright pixels)."""
    model = _tiny_compact()
    last = model.module.body[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    x = torch.rand(1, 3, 12, 10)
    bf16 = EngineOptions(device="cpu", precision="bf16", runtime="openvino")
    with engine_for(model, bf16) as engine:
        assert engine.plan.executor.precision == "bf16"
        y = engine.run_network(x)
    expected = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert float((y - expected).abs().max()) < 1e-6


def test_engine_goes_back_to_torch_when_closed():
    engine = engine_for(_tiny_compact(), FP32_OV)
    replica, network = engine.replicas[0], engine.executor.network
    assert engine.run_network(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    assert network.compiled_shapes == [(1, 3, 8, 8)]
    engine.close()
    with torch.inference_mode():
        assert replica.network(torch.rand(1, 3, 6, 6), fp32=False, flags=[]).shape[-1] == 12
    assert network.compiled_shapes == [(1, 3, 8, 8)]  # torch ran the new size


def test_int8_is_calibrated_on_the_clip_cached_and_close_to_fp32(clip, cache):
    src = clip("calibration.mkv", width=64, height=48, frames=8, content="moving")
    model = load_model("compact", scale=2)
    int8 = EngineOptions(device="cpu", precision="int8", runtime="openvino",
                         openvino=OpenVinoOptions(force_int8=True, calibration=src))
    fp32 = _upscaled(model, FP32_OV, src)
    quantised = _upscaled(model, int8, src)
    xml = sorted((cache / "openvino").glob("compact-*-int8-*.xml"))
    assert len(xml) == 1 and xml[0].with_suffix(".bin").is_file()
    mean = np.mean([np.abs(a.astype(int) - b.astype(int)).mean()
                    for pa, pb in zip(quantised, fp32, strict=True)
                    for a, b in zip(pa, pb, strict=True)])
    assert 0 < mean < 3.0  # quantised (not fp32 again), and close to it
    written = xml[0].stat().st_mtime_ns
    assert _largest_difference(_upscaled(model, int8, src), quantised) == 0
    assert xml[0].stat().st_mtime_ns == written  # quantised once


def test_int8_plan_defaults_to_the_clip_itself(clip, capsys):
    src = clip("in.mkv", width=32, height=32, frames=2)
    assert main([str(src), str(src.with_name("out.mkv")), "--runtime", "openvino",
                 "--precision", "int8", "--force-int8", "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["runtime"] == {"name": "openvino", "reason": "asked for"}
    assert plan["executor"]["kind"] == "openvino"
    assert plan["executor"]["calibration"] == str(src)
    assert plan["precision"]["name"] == "int8"


def test_int8_is_gated_by_its_measured_loss():
    machine = this_machine()

    def choose(losses: dict[str, float], **flags) -> str:
        measured = MeasuredLoss(losses, "card test x2")
        choice = choose_precision("int8", "cpu", machine, measured, runtime="openvino", **flags)
        return choice.reason

    assert choose({"int8": 0.04}) == "asked for; costs 0.040 dB on Set5 (card test x2)," \
                                     " within 0.1 dB"
    with pytest.raises(OptionsError, match=r"int8 costs 0\.250 dB .* over the 0\.1 dB"):
        choose({"int8": 0.25})
    assert choose({"int8": 0.25}, force_int8=True).startswith("asked for and forced")
    with pytest.raises(OptionsError, match="int8 is not measured for this model"):
        choose({"bf16": 0.0})
    with pytest.raises(OptionsError, match="add --runtime openvino"):
        choose_precision("int8", "cpu", machine, MeasuredLoss({"int8": 0.0}, "x"))


def test_card_int8_losses_pass_the_gate_where_measured():
    model = load_model("compact", scale=4)
    loss = model.measured_loss().losses.get("int8")
    assert loss is not None  # measured for the card (benchmarks/openvino_bench.py)
    options = EngineOptions(device="cpu", precision="int8", runtime="openvino")
    if loss <= 0.1:
        assert resolve_plan(model, options).precision.name == "int8"
    else:
        with pytest.raises(OptionsError):
            resolve_plan(model, options)


def test_auto_measures_once_and_keeps_the_choice(cache):
    model = _tiny_compact()
    options = EngineOptions(device="cpu", precision="fp32", runtime="auto")
    plan = resolve_plan(model, options, choose_runtime=faster_plan)
    assert "measured once and cached" in plan.runtime.reason
    assert plan.runtime.name in ("torch", "openvino")
    assert isinstance(plan.executor, OpenVinoPlan) == (plan.runtime.name == "openvino")
    store = cache / "openvino" / "runtime-choices.json"
    choices = json.loads(store.read_text())
    # The stored timing decides from now on: make torch the faster one.
    for timing in choices.values():
        timing.update(torch_ms=1.0, openvino_ms=2.0)
    store.write_text(json.dumps(choices))
    again = resolve_plan(model, options, choose_runtime=faster_plan)
    assert again.runtime.name == "torch"
    assert "OpenVINO fp32 2 ms, torch fp32 1 ms" in again.runtime.reason


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_times_each_runtime_in_the_precision_its_run_would_use(native_bf16, monkeypatch):
    """bf16 against bf16 on a CPU with native bf16 (for weights measured to tolerate it on
    both runtimes), fp32 against fp32 elsewhere; the run keeps the precision timed."""
    from vidsr.executors import openvino

    machine = replace(this_machine(), native_bf16=native_bf16)
    model = _tiny_compact(seed=3)
    monkeypatch.setattr(model, "measured_loss", lambda: MeasuredLoss(
        {"bf16": 0.001, "openvino-bf16": 0.004}, "card test x2"))
    timed: list[tuple[str, str]] = []
    figures = {"torch_ms": 30.0, "openvino_ms": 20.0}

    def fake_timing(model, on_torch, on_openvino):
        timed.append((on_torch.precision.name, on_openvino.precision.name))
        return dict(figures)

    monkeypatch.setattr(openvino, "_time_runtimes", fake_timing)
    precision = "bf16" if native_bf16 else "fp32"
    options = EngineOptions(device="cpu", runtime="auto")
    plan = resolve_plan(model, options, machine=machine, choose_runtime=openvino.faster_plan)
    assert timed == [(precision, precision)]
    assert plan.runtime.name == "openvino" and plan.precision.name == precision
    assert isinstance(plan.executor, OpenVinoPlan) and plan.executor.precision == precision
    assert (f"took OpenVINO {precision} 20 ms, torch {precision} 30 ms"
            in plan.to_text())  # the plan prints the figures it chose by
    # Torch measured faster: torch runs, in the precision it was timed in.
    figures.update(torch_ms=10.0)
    # (Other weights: the first timing is cached under these.)
    monkeypatch.setattr(openvino, "weights_key", lambda module, scale: "other-weights")
    plan = resolve_plan(model, options, machine=machine, choose_runtime=openvino.faster_plan)
    assert plan.runtime.name == "torch" and plan.precision.name == precision
    assert not isinstance(plan.executor, OpenVinoPlan)
    assert f"OpenVINO {precision} 20 ms, torch {precision} 10 ms" in plan.runtime.reason


def test_openvino_bf16_needs_its_own_measured_loss():
    """OpenVINO's bf16 casts the picture layers too: torch's bf16 figure does not vouch
    for it."""
    machine = replace(this_machine(), native_bf16=True)
    torch_only = MeasuredLoss({"bf16": 0.001}, "card test x2")
    assert choose_precision("auto", "cpu", machine, torch_only).name == "bf16"
    choice = choose_precision("auto", "cpu", machine, torch_only, runtime="openvino")
    assert choice.name == "fp32"
    assert choice.reason == ("auto: OpenVINO's bf16 is not measured for this model"
                             " (card test x2)")
    both = MeasuredLoss({"bf16": 0.001, "openvino-bf16": 0.03}, "card test x2")
    assert choose_precision("auto", "cpu", machine, both, runtime="openvino").name == "fp32"
    both = MeasuredLoss({"bf16": 0.001, "openvino-bf16": 0.01}, "card test x2")
    assert choose_precision("auto", "cpu", machine, both, runtime="openvino").name == "bf16"


def test_without_openvino_the_runtime_is_one_clear_line(clip, capsys, monkeypatch):
    src = clip("in.mkv", width=32, height=32, frames=2)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "openvino" else real(name, *rest))
    out = src.with_name("out.mkv")
    assert main([str(src), str(out), "--runtime", "openvino", "--dry-run"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "vidsr: error: --runtime openvino: OpenVINO is not installed"
        " (pip install 'vidsr[openvino]')"]
    assert main([str(src), str(out), "--runtime", "auto", "--dry-run"]) == 0
    assert "runtime    torch: auto: OpenVINO is not installed" in capsys.readouterr().out


def test_resizers_are_refused():
    with pytest.raises(OptionsError, match="exact resizer with no network"):
        resolve_plan(load_model("nearest", scale=2), FP32_OV)


def test_bench_compares_runtimes_on_one_clip(clip):
    src = clip("bench.mkv", width=32, height=32, frames=4, content="moving")
    options = BenchOptions(model="compact", scale=2, serial=False)
    reports = [run_bench(src, options, EngineOptions(device="cpu", precision="fp32",
                                                     runtime=runtime))
               for runtime in ("torch", "openvino")]
    assert [r.plan["runtime"]["name"] for r in reports] == ["torch", "openvino"]
    assert all(r.frames == 4 and r.model_only_fps > 0 for r in reports)
    lines = runtime_comparison(reports).splitlines()
    assert lines[2].split()[:2] == ["torch", "fp32"] and "(1.00x)" in lines[2]
    ratio = reports[1].model_only_fps / reports[0].model_only_fps
    assert lines[3].split()[:2] == ["openvino", "fp32"] and f"({ratio:4.2f}x)" in lines[3]


# -- window models -----------------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["temporal", "temporal_luma"])
def test_a_window_model_with_a_cut_equals_torch_within_one_code_value(weights, request,
                                                                      tmp_path):
    model = request.getfixturevalue(weights)
    src = write_ffv1(tmp_path / "ab.mkv", shot_frames("square", 4) + shot_frames("bars", 4))

    def upscale(name: str, **engine) -> list[list[np.ndarray]]:
        result = upscale_video(src, tmp_path / name, model=model,
                               encode=EncodeOptions(codec="ffv1"),
                               control=RunControl(progress=False),
                               engine=EngineOptions(device="cpu", precision="fp32", **engine))
        assert result.cuts == [4]
        return decoded_frames(tmp_path / name)

    on_torch = upscale("torch.mkv")
    # Whole frames, and 16-pixel tiles: every frame of a window cropped alike.
    for name, engine in (("ov.mkv", {}), ("ov-tiled.mkv", {"tile": 16})):
        got = upscale(name, runtime="openvino", **engine)
        assert len(got) == len(on_torch) == 8
        assert _largest_difference(got, on_torch) <= 1


def test_a_window_model_reaches_openvino_with_its_frames_stacked(temporal):
    model = load_model(str(temporal), scale=2)
    windows = torch.rand(2, 3, 3, 12, 10)
    with engine_for(model, FP32_TORCH) as engine:
        expected = engine.run_network(windows)
    with engine_for(model, FP32_OV) as engine:
        got = engine.run_network(windows)
        assert engine.executor.network.compiled_shapes == [(2, 9, 12, 10)]
    assert got.shape == (2, 3, 24, 20)
    assert float((got - expected).abs().max()) < 1e-5


@pytest.mark.parametrize("window", [False, True])
def test_prepare_compiles_the_frame_size_before_the_first_frame(window, temporal):
    """vsvidsr prepares when the script is evaluated: the frames' size is compiled then,
    stacked as a window model takes it, and the first frame compiles nothing."""
    model = load_model(str(temporal), scale=2) if window else _tiny_compact()
    with engine_for(model, FP32_OV) as engine:
        network = engine.executor.network
        engine.prepare(width=20, height=12)
        shape = (1, 9 if window else 3, 12, 20)
        assert shape in network.compiled_shapes
        compiled = set(network.compiled_shapes)
        frames = torch.rand(1, 3, 3, 12, 20) if window else torch.rand(1, 3, 12, 20)
        assert engine.run_network(frames).shape == (1, 3, 24, 40)
        assert set(network.compiled_shapes) == compiled


def test_int8_of_a_window_model_is_gated_and_calibrated_on_consecutive_frames(temporal,
                                                                            tmp_path):
    src = write_ffv1(tmp_path / "c.mkv", shot_frames("square", 6))
    with pytest.raises(OptionsError, match="int8 is not measured for this model"):
        plan_upscale(src, tmp_path / "x2.mkv", model=temporal,
                     engine=EngineOptions(device="cpu", precision="int8", runtime="openvino"))
    model = load_model(str(temporal), scale=2)
    spec = model.spec
    # The picture layers int8 keeps in f32 are found by their node names in the export.
    onnx = pytest.importorskip("onnx")
    names = [node.name for node in onnx.load(str(onnx_for(model.module, spec, 2))).graph.node]
    for layer in spec.picture_layers:
        assert any(name.startswith(node_scope(spec, layer)) for name in names), layer
    samples = calibration_inputs(src, spec, 2, count=6)
    assert len(samples) == 4 and samples[0].shape == (1, 9, 48, 64)
    # Windows of consecutive frames, oldest first: each shares two frames with the next.
    np.testing.assert_array_equal(samples[1][:, :6], samples[0][:, 3:])
    assert float(np.abs(samples[0][:, :3] - samples[0][:, 3:6]).max()) > 0


def test_auto_times_a_window_model_too(temporal):
    model = load_model(str(temporal), scale=2)
    options = EngineOptions(device="cpu", precision="fp32", runtime="auto")
    plan = resolve_plan(model, options, choose_runtime=faster_plan)
    assert "measured once and cached" in plan.runtime.reason


_FIRST_INFERENCES = """
import threading, torch
from vidsr.archs import create_arch
from vidsr.executors import openvino
from vidsr.models.zoo import SRModel
from vidsr.plan.run_plan import EngineOptions, resolve_plan
from vidsr.engine.engine import Engine

seen = []
infer = openvino.OpenVinoNetwork._infer
def recorded(request, x, flags):
    seen.append((tuple(x.shape), openvino._FIRST_INFERENCE.locked()))
    return infer(request, x, flags)
openvino.OpenVinoNetwork._infer = staticmethod(recorded)

torch.manual_seed(0)
model = SRModel.from_module(create_arch("compact", num_feat=8, num_conv=2, scale=2).eval(), 2)
options = EngineOptions(device="cpu", precision="fp32", runtime="openvino")
with Engine(model, resolve_plan(model, options)) as engine:
    network = engine.executor.network
    frames = [torch.rand(1, 3, 96, 128) for _ in range(2)]
    threads = [threading.Thread(target=network, args=(x, False, [])) for x in frames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
print(seen)
"""


def test_the_first_inference_alone_is_a_tiny_one(cache):
    """The process's first OpenVINO inference runs alone (a hang otherwise); it is a tiny
    one, so that a worker's first frame does not wait for another worker's whole frame."""
    run = subprocess.run([sys.executable, "-c", _FIRST_INFERENCES], capture_output=True,
                         text=True, check=True, timeout=120)
    seen = ast.literal_eval(run.stdout.strip().splitlines()[-1])  # [(shape, locked), ...]
    assert seen[0] == ((1, 3, 16, 16), True)
    assert sorted(seen[1:]) == [((1, 3, 96, 128), False)] * 2

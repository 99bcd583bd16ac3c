"""The engine: tiling, out-of-memory retries, precision fallback, several devices in flight,
and the engine inside the staged pipeline (order, failures, Ctrl-C, flat memory)."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from engines import engine_for
from torch import nn

from vidsr.archs.spec import ArchSpec
from vidsr.engine.engine import Engine
from vidsr.errors import Cancelled, ModelError, OptionsError, OutOfMemoryError
from vidsr.executors.cuda_slots import staging
from vidsr.io.colour import ColourSpec
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.models.zoo import SRModel, load_model
from vidsr.plan.devices import is_out_of_memory, resolve_devices
from vidsr.plan.run_plan import CpuWorkersPlan, CudaSlotsPlan, EngineOptions, SyncPlan, resolve_plan
from vidsr.run.pipeline import InFlight, run_pipeline

YUV420 = PlaneLayout("yuv", 8, 1, 1, "yuv420p")
YUV420_10 = PlaneLayout("yuv", 10, 1, 1, "yuv420p10le")
BT709 = ColourSpec("bt709", False, "bt709", "bt709")


def _vidsr_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vidsr-")]


class ConvStack(nn.Module):
    """Three 3x3 convs then a x2 pixel shuffle: receptive radius 3 input pixels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _sr_model(module: nn.Module, *, space: str = "rgb", radius: int = 3) -> SRModel:
    spec = ArchSpec("test", (2,), space, receptive_radius=radius)  # type: ignore[arg-type]
    return SRModel(name="test", module=module.eval(), spec=spec, scale=2)


class OutOfMemoryAbove(nn.Module):
    """Raises the CUDA out-of-memory error when a call gets more than ``max_frames``
    frames or more than ``max_pixels`` pixels per frame; otherwise runs ``inner``."""

    def __init__(self, inner: nn.Module, *, max_frames: int = 1 << 30,
                 max_pixels: int = 1 << 30) -> None:
        super().__init__()
        self.inner = inner
        self.max_frames = max_frames
        self.max_pixels = max_pixels
        self.refused = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.max_frames or x.shape[-1] * x.shape[-2] > self.max_pixels:
            self.refused += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


class NonFiniteBelowFp32(nn.Module):
    """Pixel replication x2 that returns NaN whenever it runs under reduced precision:
    stands in for a network that overflows in it (fp16 on CUDA)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        return y * float("nan") if torch.is_autocast_enabled(x.device.type) else y


def _frames(n: int, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


# -- tiling ------------------------------------------------------------------------------


def test_tiled_result_equals_untiled_when_the_receptive_field_fits_the_overlap():
    x = _frames(2, 40, 52)
    whole = engine_for(_sr_model(ConvStack()), EngineOptions(device="cpu")).run_network(x)
    tiled = engine_for(_sr_model(ConvStack()),
                   EngineOptions(device="cpu", tile=16, tile_overlap=4)).run_network(x)
    assert tiled.shape == whole.shape == (2, 3, 80, 104)
    # Every pixel, borders included: the image border is the same in both runs.
    assert (tiled - whole).abs().max().item() < 1e-4


def test_tiles_with_too_little_overlap_show_seams():
    # The check above is not vacuous: with overlap 1 < radius 3 the tiles differ.
    x = _frames(1, 40, 52)
    whole = engine_for(_sr_model(ConvStack()), EngineOptions(device="cpu")).run_network(x)
    tiled = engine_for(_sr_model(ConvStack()),
                   EngineOptions(device="cpu", tile=16, tile_overlap=1)).run_network(x)
    assert (tiled - whole).abs().max().item() > 1e-3


# -- out of memory ----------------------------------------------------------------------------


def test_out_of_memory_on_a_batch_retries_in_halves_without_losing_or_repeating_frames(caplog):
    x = _frames(5)
    reference = engine_for(_sr_model(ConvStack()), EngineOptions(device="cpu")).run_network(x)
    engine = engine_for(_sr_model(OutOfMemoryAbove(ConvStack(), max_frames=2)),
                    EngineOptions(device="cpu"))
    guard = engine.module  # the engine's own copy counts the refusals
    with caplog.at_level(logging.WARNING, logger="vidsr"):
        out = engine.run_network(x)
    assert out.shape == reference.shape
    assert torch.allclose(out, reference, atol=1e-5)  # frame k is frame k: order kept
    assert "out of memory" in caplog.text
    assert engine.replicas[0].max_batch == 2
    refused = guard.refused
    assert refused > 0
    engine.run_network(_frames(5, seed=1))  # the engine remembers: no new failure
    assert guard.refused == refused


def test_out_of_memory_on_one_frame_falls_back_to_halving_tiles():
    x = _frames(2, 40, 64)
    reference = engine_for(_sr_model(ConvStack()), EngineOptions(device="cpu")).run_network(x)
    # One frame of at most 24x24 (+ overlap) pixels fits: 64 -> 32 -> 16-pixel tiles.
    guard = OutOfMemoryAbove(ConvStack(), max_frames=1, max_pixels=24 * 24)
    engine = engine_for(_sr_model(guard),
                              EngineOptions(device="cpu", tile_overlap=4, min_tile=16))
    out = engine.run_network(x)
    assert engine.replicas[0].tile == 16
    assert (out - reference).abs().max().item() < 1e-4


def test_out_of_memory_below_the_tile_floor_is_reported():
    guard = OutOfMemoryAbove(ConvStack(), max_pixels=4)
    engine = engine_for(_sr_model(guard), EngineOptions(device="cpu", min_tile=16))
    with pytest.raises(OutOfMemoryError, match="out of memory"):
        engine.run_network(_frames(1, 40, 64))


def test_out_of_memory_is_recognised_on_cuda_and_on_the_cpu():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


# -- precision --------------------------------------------------------------------------------


def test_bf16_batch_that_goes_non_finite_is_redone_in_fp32_with_a_warning(caplog):
    # fp16 is refused on the CPU; the same fallback code runs for every reduced precision.
    engine = engine_for(_sr_model(NonFiniteBelowFp32()),
                              EngineOptions(device="cpu", precision="bf16"))
    x = _frames(2)
    with caplog.at_level(logging.WARNING, logger="vidsr"):
        out = engine.run_network(x)
    assert "non-finite" in caplog.text and "fp32" in caplog.text
    assert torch.equal(out, x.repeat_interleave(2, -2).repeat_interleave(2, -1))


@pytest.mark.parametrize("workers", [1, 2], ids=["in the caller", "in CPU workers"])
def test_bf16_non_finite_fallback_also_covers_decoded_batches(caplog, workers):
    batch = _yuv_batch(2, 16, 24)
    with caplog.at_level(logging.WARNING, logger="vidsr"), \
            engine_for(_sr_model(NonFiniteBelowFp32(), space="y"),
                   EngineOptions(device="cpu", precision="bf16", cpu_workers=workers)) as engine:
        out = engine.upscale_batch(batch, BT709, YUV420)
    assert "frames 0-1" in caplog.text
    expected = np.repeat(np.repeat(batch.planes[0], 2, 1), 2, 2)
    assert np.abs(out.planes[0].astype(int) - expected).max() <= 1


class Gain(nn.Module):
    """Pixel replication x2 times ``gain`` in every precision: damaged weights (NaN, Inf),
    or weights scaled far out, whose output is finite but no picture."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1) * self.gain


NO_PICTURE = pytest.mark.parametrize("gain", [float("nan"), float("inf"), 1000.0],
                                     ids=["nan", "inf", "finite but out of range"])


@NO_PICTURE
@pytest.mark.parametrize("executor", [SyncPlan(1), CpuWorkersPlan(2, 1), CudaSlotsPlan(2)],
                         ids=["sync", "cpu-workers", "cuda-slots"])
def test_fp32_output_that_is_no_picture_fails_naming_the_frames(gain, executor):
    batches = [_yuv_batch(2, 16, 24, first=2 * i, seed=i) for i in range(3)]
    model = _sr_model(Gain(gain), space="y")
    plan = resolve_plan(model, EngineOptions(device="cpu", precision="fp32"))
    with Engine(model, replace(plan, executor=executor)) as engine, \
            pytest.raises(ModelError) as caught:
        run_pipeline(iter(batches), [("infer", engine.infer_stage(BT709, YUV420))],
                     lambda batch: None)
    assert str(caught.value) == ("the model gave non-finite or out-of-range values (NaN, Inf"
                                 " or past ±16) on frames 0-1; the weights look damaged")


@NO_PICTURE
def test_bf16_output_that_is_no_picture_in_fp32_either_fails_after_the_redo(gain, caplog):
    engine = engine_for(_sr_model(Gain(gain)), EngineOptions(device="cpu",
                                                                   precision="bf16"))
    with caplog.at_level(logging.WARNING, logger="vidsr"), \
            pytest.raises(ModelError, match=r"on a batch of 3, in fp32 too;"):
        engine.run_network(_frames(3))
    assert "bfloat16 gave non-finite or out-of-range values on a batch of 3" in caplog.text


def test_a_network_that_overshoots_like_a_real_one_is_kept():
    out = engine_for(_sr_model(Gain(15.0)), EngineOptions(device="cpu")).run_network(
        torch.ones(1, 3, 4, 4))
    assert out.max().item() == 15.0


def test_fp16_on_the_cpu_is_refused():
    with pytest.raises(OptionsError, match="bf16"):
        engine_for(_sr_model(ConvStack()), EngineOptions(device="cpu", precision="fp16"))


# -- decoded batches ------------------------------------------------------------------------


def _yuv_batch(n: int, h: int, w: int, layout: PlaneLayout = YUV420, first: int = 0,
               seed: int = 0) -> FrameBatch:
    rng = np.random.default_rng(seed)
    hi = layout.max_code
    planes = [rng.integers(0, hi + 1, (n, *layout.plane_shape(p, w, h)), dtype=layout.dtype)
              for p in range(3)]
    return FrameBatch(planes, list(range(first, first + n)), Fraction(1, 25), first, layout)


@pytest.mark.parametrize("layout", [YUV420, YUV420_10], ids=["8-bit", "10-bit"])
def test_nearest_upscale_of_planes_is_exact_and_keeps_the_sample_type(layout):
    engine = engine_for(load_model("nearest", scale=2), EngineOptions(device="cpu"))
    batch = _yuv_batch(3, 10, 14, layout)
    out = engine.upscale_batch(batch, BT709, layout)
    for plane_in, plane_out in zip(batch.planes, out.planes, strict=True):
        assert plane_out.dtype == layout.dtype
        assert np.array_equal(plane_out, np.repeat(np.repeat(plane_in, 2, 1), 2, 2))
    assert out.pts == batch.pts and out.first_index == 0


# -- several devices, in flight ---------------------------------------------------------------


def test_the_callers_model_is_left_as_loaded():
    model = _sr_model(ConvStack())
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    bf16 = engine_for(model, EngineOptions(device="cpu", precision="bf16"))
    fp32 = engine_for(model, EngineOptions(device="cpu", precision="fp32",
                                                 channels_last=False))
    for name, tensor in model.module.state_dict().items():
        assert tensor.dtype == torch.float32 and tensor.is_contiguous()
        assert torch.equal(tensor, before[name])
    x = _frames(1, 8, 8)
    assert bf16.run_network(x).dtype == fp32.run_network(x).dtype == torch.float32
    # Each engine kept its own precision: they differ by bf16 rounding, not at all in fp32.
    assert torch.equal(fp32.run_network(x), model.module(x))
    assert not torch.equal(bf16.run_network(x), fp32.run_network(x))


def test_device_list_means_several_devices():
    assert resolve_devices("cpu,cpu") == (torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(OptionsError, match="empty device"):
        resolve_devices("cpu,")
    # A plan takes several devices only where each has its own streams.
    with pytest.raises(OptionsError, match="several devices need CUDA"):
        engine_for(load_model("nearest", scale=2), EngineOptions(device="cpu,cpu"))


def test_batches_dealt_over_two_devices_come_back_in_order_through_the_pipeline():
    batches = [_yuv_batch(2, 8, 12, first=2 * i, seed=i) for i in range(9)]
    single = engine_for(load_model("nearest", scale=2), EngineOptions(device="cpu"))
    expected = [single.upscale_batch(b, BT709, YUV420) for b in batches]
    # Two devices take batches in turn through the CUDA slots' code (on the CPU's stand-ins).
    nearest = load_model("nearest", scale=2)
    dual = Engine(nearest, replace(resolve_plan(nearest, EngineOptions(device="cpu")),
                                   devices=("cpu", "cpu"), executor=CudaSlotsPlan(1)))
    assert dual.in_flight == 2 and len(dual.replicas) == 2
    seen: list[FrameBatch] = []
    timing = run_pipeline(iter(batches), [("infer", dual.infer_stage(BT709, YUV420))],
                          seen.append, depth=2)
    assert [b.first_index for b in seen] == [b.first_index for b in batches]
    for got, want in zip(seen, expected, strict=True):
        assert all(np.array_equal(g, w) for g, w in zip(got.planes, want.planes, strict=True))
    assert timing.items == 9 and timing.busy_s["infer"] > 0
    assert not _vidsr_threads()


class _SlowHandle:
    """Finishes after ``polls`` calls to ready(); result() finishes it at once."""

    def __init__(self, value: int, polls: int, outstanding: list[int]) -> None:
        self.value, self.polls, self.outstanding = value, polls, outstanding
        outstanding[0] += 1
        outstanding[1] = max(outstanding[1], outstanding[0])

    def ready(self) -> bool:
        self.polls -= 1
        return self.polls <= 0

    def result(self) -> int:
        self.outstanding[0] -= 1
        return self.value


def test_in_flight_stage_keeps_at_most_depth_outstanding_and_emits_in_order():
    outstanding = [0, 0]  # now, most ever
    # Items finish in a scrambled order; output order must still be input order.
    stage = InFlight(lambda i: _SlowHandle(i, (7 * i) % 5, outstanding), depth=3)
    seen: list[int] = []
    run_pipeline(range(40), [("infer", stage)], seen.append, depth=2)
    assert seen == list(range(40))
    assert outstanding == [0, 3]


# -- failures and Ctrl-C with the engine in the pipeline ----------------------------------------


class FailsOnBatch(nn.Module):
    """Nearest x2 that raises on its ``k``-th call."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k, self.calls = k, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.k:
            raise FloatingPointError("model broke on this batch")
        return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def test_model_failure_stops_the_run_with_the_original_error():
    engine = engine_for(_sr_model(FailsOnBatch(3), space="y"), EngineOptions(device="cpu"))
    produced = []

    def source():
        for i in range(1000):
            produced.append(i)
            yield _yuv_batch(1, 8, 8, first=i)

    with pytest.raises(FloatingPointError, match="model broke"):
        run_pipeline(source(), [("infer", engine.infer_stage(BT709, YUV420))],
                     lambda _: None, depth=2)
    assert len(produced) < 20
    assert not _vidsr_threads()


def test_ctrl_c_while_the_engine_runs_cancels_and_ends_every_thread():
    engine = engine_for(load_model("nearest", scale=2), EngineOptions(device="cpu"))

    def sink(batch: FrameBatch) -> None:
        if batch.first_index == 2:
            raise KeyboardInterrupt

    batches = (_yuv_batch(1, 8, 8, first=i) for i in range(1000))
    with pytest.raises(Cancelled):
        run_pipeline(batches, [("infer", engine.infer_stage(BT709, YUV420))], sink, depth=2)
    assert not _vidsr_threads()


# -- CPU threads --------------------------------------------------------------------------------


def test_cpu_workers_keep_frame_order_and_match_one_batch_at_a_time():
    batches = [_yuv_batch(1, 8, 12, first=i, seed=i) for i in range(12)]
    single = engine_for(_sr_model(ConvStack()), EngineOptions(device="cpu", precision="fp32"))
    expected = [single.upscale_batch(b, BT709, YUV420) for b in batches]
    threads = torch.get_num_threads()
    with engine_for(_sr_model(ConvStack()),
                EngineOptions(device="cpu", precision="fp32", cpu_workers=3,
                              cpu_threads=1)) as engine:
        assert engine.in_flight == 3 and torch.get_num_threads() == 1
        seen: list[FrameBatch] = []
        run_pipeline(iter(batches), [("infer", engine.infer_stage(BT709, YUV420))],
                     seen.append, depth=2)
        workers = {t.name for t in _vidsr_threads() if t.name.startswith("vidsr-cpu-worker")}
        assert len(workers) >= 2  # the batches really ran side by side in several threads
    assert [b.first_index for b in seen] == list(range(12))
    for got, want in zip(seen, expected, strict=True):
        assert all(np.array_equal(g, w) for g, w in zip(got.planes, want.planes, strict=True))
    # close() ends the workers and gives the process its thread count back.
    assert not _vidsr_threads() and torch.get_num_threads() == threads


def test_failure_in_a_cpu_worker_stops_the_run_with_the_original_error():
    with engine_for(_sr_model(FailsOnBatch(3), space="y"),
                EngineOptions(device="cpu", cpu_workers=2)) as engine:
        with pytest.raises(FloatingPointError, match="model broke"):
            run_pipeline((_yuv_batch(1, 8, 8, first=i) for i in range(1000)),
                         [("infer", engine.infer_stage(BT709, YUV420))], lambda _: None,
                         depth=2)
    assert not _vidsr_threads()


def test_negative_cpu_workers_are_refused():
    with pytest.raises(OptionsError, match="must be at least 1"):
        engine_for(load_model("nearest", scale=2),
                         EngineOptions(device="cpu", cpu_workers=-1))


# -- CUDA -------------------------------------------------------------------------------------


def test_slot_staging_buffers_are_reused_and_grown_only_when_needed():
    # The slots' buffer logic, on the CPU without pinning (pinning needs a CUDA driver).
    buffers: list[torch.Tensor] = []
    planes = [torch.zeros(2, 8, 12, dtype=torch.uint8), torch.zeros(2, 4, 6, dtype=torch.uint8)]
    first = staging(buffers, planes, pin=False)
    assert [v.shape for v in first] == [p.shape for p in planes] and len(buffers) == 2
    pointers = [b.data_ptr() for b in buffers]
    smaller = staging(buffers, [torch.zeros(1, 8, 12, dtype=torch.uint8)], pin=False)
    assert smaller[0].data_ptr() == pointers[0]  # a smaller batch reuses the buffer
    larger = staging(buffers, [torch.zeros(4, 8, 12, dtype=torch.uint8)], pin=False)
    assert buffers[0].data_ptr() != pointers[0] and larger[0].numel() == 4 * 8 * 12
    ten_bit = staging(buffers, [torch.zeros(1, 8, 12, dtype=torch.uint16)], pin=False)
    assert ten_bit[0].dtype == torch.uint16 and buffers[1].data_ptr() == pointers[1]


def _slot_engine(device: str, model: SRModel, precision: str, in_flight: int = 3,
                 **options: int) -> Engine:
    """An engine whose batches go through the CUDA slots. On the CPU (where a plan never
    picks them by itself) the slots are built from torch's stand-in streams and events,
    so the CUDA path's own code runs on a machine without a GPU."""
    devices = tuple(device.split(","))  # a plan never deals batches to several CPUs itself
    plan = resolve_plan(model, EngineOptions(device=devices[0], precision=precision, **options))
    engine = Engine(model, replace(plan, devices=devices, executor=CudaSlotsPlan(in_flight)))
    assert all(len(ring) == in_flight for ring in engine.executor.rings)
    return engine


ON_EACH_DEVICE = pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])


@ON_EACH_DEVICE
@pytest.mark.parametrize("layout", [YUV420, YUV420_10], ids=["8bit", "10bit"])
def test_in_flight_batches_match_one_at_a_time_and_reuse_their_buffers(device, layout):
    reference = engine_for(_sr_model(ConvStack()),
                                 EngineOptions(device="cpu", precision="fp32"))
    engine = _slot_engine(device, _sr_model(ConvStack()), "fp32")
    batches = [_yuv_batch(2, 16, 24, layout, first=2 * i, seed=i) for i in range(7)]
    slot = engine.executor.rings[0][0]
    # Seven submitted before any result is read: batches 3-6 take slots whose earlier
    # batch must first be copied out of the buffers they are about to overwrite.
    pending = [engine.submit(b, BT709, layout) for b in batches[:3]]
    pointer = slot._host_in[0].data_ptr()
    pending += [engine.submit(b, BT709, layout) for b in batches[3:]]
    out = [p.result() for p in pending]
    assert slot._host_in[0].data_ptr() == pointer and slot._host_in[0].is_pinned() == slot.pinned
    for got, batch in zip(out, batches, strict=True):
        want = reference.upscale_batch(batch, BT709, layout)
        assert got.first_index == batch.first_index and got.planes[0].dtype == layout.dtype
        for g, w in zip(got.planes, want.planes, strict=True):
            assert np.abs(g.astype(int) - w).max() <= 1


def test_out_of_memory_inside_the_slots_halves_then_tiles_and_keeps_every_frame():
    reference = engine_for(_sr_model(ConvStack()),
                                 EngineOptions(device="cpu", precision="fp32"))
    # At most 24x24 pixels fit, overlap included: batches of 4 go down to single frames,
    # then to 32- and 16-pixel tiles (24x24 with the overlap), two batches in flight.
    engine = _slot_engine("cpu", _sr_model(OutOfMemoryAbove(ConvStack(), max_frames=1,
                                                            max_pixels=24 * 24)),
                          "fp32", in_flight=2, tile_overlap=4, min_tile=16)
    guard = engine.module
    batches = [_yuv_batch(4, 32, 64, first=4 * i, seed=i) for i in range(3)]
    seen: list[FrameBatch] = []
    run_pipeline(iter(batches), [("infer", engine.infer_stage(BT709, YUV420))], seen.append)
    replica = engine.replicas[0]
    assert (replica.max_batch, replica.tile) == (1, 16) and guard.refused > 0
    assert [b.first_index for b in seen] == [0, 4, 8]
    for got, batch in zip(seen, batches, strict=True):
        want = reference.upscale_batch(batch, BT709, YUV420)
        for g, w in zip(got.planes, want.planes, strict=True):
            assert g.shape == w.shape and np.abs(g.astype(int) - w).max() <= 1


def test_a_slot_batch_that_goes_non_finite_is_redone_in_fp32(caplog):
    # On the CPU through the slots' code; on CUDA the fp16 overflow test below does the same.
    engine = _slot_engine("cpu", _sr_model(NonFiniteBelowFp32(), space="y"), "bf16", in_flight=2)
    batches = [_yuv_batch(2, 16, 24, first=2 * i, seed=i) for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="vidsr"):
        seen: list[FrameBatch] = []
        run_pipeline(iter(batches), [("infer", engine.infer_stage(BT709, YUV420))], seen.append)
    for k, (got, batch) in enumerate(zip(seen, batches, strict=True)):
        assert caplog.text.count(f"frames {2 * k}-{2 * k + 1};") == 1  # redone once, in fp32
        assert np.array_equal(got.planes[0], np.repeat(np.repeat(batch.planes[0], 2, 1), 2, 2))
    assert all(slot.pending is None for slot in engine.executor.rings[0])


@pytest.mark.gpu
def test_a_cuda_engine_lets_cudnn_pick_its_algorithms_until_closed(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    with engine_for(load_model("nearest", scale=2), EngineOptions(device="cuda")):
        assert torch.backends.cudnn.benchmark
    assert not torch.backends.cudnn.benchmark


def test_a_cpu_engine_leaves_the_cudnn_setting_alone(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    with engine_for(load_model("nearest", scale=2), EngineOptions(device="cpu")):
        assert not torch.backends.cudnn.benchmark


class OverflowsInFp16(nn.Module):
    """A 1x1 convolution by 1e5, then / 1e5: fine in fp32, +-inf in fp16 (max 65504)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.constant_(self.gain.weight, 1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gain(x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1) + 1)
        return y.float() / 1e5 - 1


@pytest.mark.gpu
def test_fp16_overflow_on_cuda_is_redone_in_fp32(caplog):
    engine = engine_for(_sr_model(OverflowsInFp16(), space="y"),
                    EngineOptions(device="cuda", precision="fp16"))
    batch = _yuv_batch(2, 16, 24)
    with caplog.at_level(logging.WARNING, logger="vidsr"):
        out = engine.upscale_batch(batch, BT709, YUV420)
    assert "float16 gave non-finite" in caplog.text
    expected = np.repeat(np.repeat(batch.planes[0], 2, 1), 2, 2)
    assert np.abs(out.planes[0].astype(int) - expected).max() <= 1


@pytest.mark.parametrize("devices", [
    "cpu,cpu", pytest.param("cuda:0,cuda:1", marks=pytest.mark.gpu)])
def test_two_devices_with_batches_in_flight_keep_frame_order(devices):
    if devices.startswith("cuda") and torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    engine = _slot_engine(devices, load_model("nearest", scale=2), "fp32", in_flight=2)
    assert engine.in_flight == 4
    batches = [_yuv_batch(2, 8, 12, first=2 * i, seed=i) for i in range(9)]
    seen: list[FrameBatch] = []
    run_pipeline(iter(batches), [("infer", engine.infer_stage(BT709, YUV420))], seen.append)
    assert [b.first_index for b in seen] == [b.first_index for b in batches]
    for got, batch in zip(seen, batches, strict=True):
        assert np.array_equal(got.planes[0], np.repeat(np.repeat(batch.planes[0], 2, 1), 2, 2))


# -- memory stays flat ----------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_memory_stays_flat_from_a_10_s_to_a_60_s_video(clip, tmp_path):
    from vidsr.run.transcode import TranscodeOptions, upscale_video

    peaks = []
    for seconds in (10, 60):
        src = clip(f"{seconds}s.mkv", width=64, height=48, frames=25 * seconds, content="noise")
        peak = 0
        sampler_stop = threading.Event()

        def sample(stop: threading.Event = sampler_stop) -> None:
            nonlocal peak
            while not stop.wait(0.02):
                peak = max(peak, _rss_bytes())

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            result = upscale_video(src, tmp_path / f"out{seconds}.mkv", model="nearest", scale=2,
                                   engine=EngineOptions(device="cpu"),
                                   options=TranscodeOptions(progress=False))
        finally:
            sampler_stop.set()
            sampler.join()
        assert result.frames == 25 * seconds
        peaks.append(peak)
    assert peaks[1] - peaks[0] < 50 * 2**20


# -- tiles on real footage ------------------------------------------------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "vidsr" / "samples" / "bbb_2s.mp4"
REALESRGAN = (Path(__file__).resolve().parents[3] / "shared" / "data" / "weights" / "realesrgan"
              / "RealESRGAN_x4plus.pth")


def _real_crop(height: int, width: int) -> tuple[FrameBatch, ColourSpec]:
    """A crop of a frame of the bundled clip (real footage), as decoded planes."""
    from vidsr.io.decode import Decoder

    with Decoder(SAMPLE, batch_size=1) as decoder:
        batch, colour = next(iter(decoder)), decoder.info.colour
    top, left = 100, 200
    planes = [batch.planes[0][:, top:top + height, left:left + width]]
    planes += [p[:, top // 2:(top + height) // 2, left // 2:(left + width) // 2]
               for p in batch.planes[1:]]
    return replace(batch, planes=[p.copy() for p in planes]), colour


def _tiled_against_whole(model: SRModel, batch: FrameBatch, colour: ColourSpec) -> int:
    """The largest difference, in code values, between tiles of 64 and the whole frame."""
    outputs = []
    for tile in (0, 64):
        with engine_for(model, EngineOptions(device="cpu", precision="fp32",
                                                   tile=tile)) as engine:
            assert engine.plan.tile.overlap == min(model.spec.receptive_radius, 64)
            outputs.append(engine.upscale_batch(batch, colour, batch.layout))
    whole, tiled = outputs
    return max(int(np.abs(w.astype(int) - t).max())
               for w, t in zip(whole.planes, tiled.planes, strict=True))


def test_vdsr_x4_in_64_pixel_tiles_equals_the_whole_frame_within_one_code_value():
    batch, colour = _real_crop(48, 64)  # VDSR tiles the 192x256 bicubic upscale: 3x4 tiles
    assert _tiled_against_whole(load_model("vdsr", scale=4), batch, colour) <= 1


def test_full_rrdb_x4_in_64_pixel_tiles_equals_the_whole_frame_within_one_code_value():
    from vidsr.models.zoo import card_network, model_cards

    torch.manual_seed(0)
    network = card_network(model_cards()["realesrgan-x4plus"], 4, device="cpu").eval()
    model = SRModel.from_module(network.requires_grad_(False), 4)
    batch, colour = _real_crop(48, 160)  # three tiles across, each seeing 128 of 160 columns
    assert _tiled_against_whole(model, batch, colour) <= 1


@pytest.mark.skipif(not REALESRGAN.is_file(), reason=f"needs {REALESRGAN} (shared data)")
def test_real_esrgan_weights_in_64_pixel_tiles_equal_the_whole_frame_within_one_code_value():
    # Trained weights reach much farther than random ones: this is what sets the 64 px cap.
    batch, colour = _real_crop(64, 192)
    assert _tiled_against_whole(load_model(REALESRGAN), batch, colour) <= 1

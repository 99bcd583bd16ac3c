"""The OpenVINO executor: the network's forward on OpenVINO on the CPU, everything else as usual.

OpenVINO runs convolution networks on Intel and AMD CPUs faster than torch does
(benchmarks/RESULTS.md). Only the forward moves: the executor installs an
:class:`OpenVinoNetwork` on the engine's replica (:meth:`Replica.use_runtime`), so
colour, padding, tiles, frame order and the fp32 redo are the engine's and the
replica's, exactly as for torch.

- The network is exported to ONNX once per weights and scale (:mod:`vidsr.executors.onnx_export`),
  under the cache dir, keyed by the sha256 of its tensors. Each input size a run
  meets (whole frames; edge and core tiles) gets the model reshaped to that static
  size and compiled for the CPU once; OpenVINO's model cache keeps the compiled
  blobs on disk (``compiled/`` beside the ONNX file), so a later run of the same size
  skips compiling.
- Precision: ``f32`` for fp32 (set explicitly: on CPUs with AMX or AVX-512 BF16
  OpenVINO would otherwise pick bf16 on its own), ``bf16`` for bf16, and int8:
  NNCF's post-training quantisation, calibrated on frames of the run's clip (or an
  image folder), cached by weights, scale and calibration source. A reduced-precision
  batch that goes non-finite is redone by torch in fp32.
- A network that sees a window of frames gets its windows (N, T, C, h, w) as the exported
  file takes them, the frames stacked on the channel axis oldest first
  (:func:`~vidsr.executors.onnx_export.stacked_windows`); int8 calibrates it on windows of
  consecutive frames.
- Threads: the plan's workers become OpenVINO streams, each running one batch on
  the plan's threads per worker, as the CPU-workers executor does with torch; the
  threads are not pinned to cores (OpenVINO pins them by default).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import io
import json
import logging
import re
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from vidsr.engine.model_space import ModelSpace
from vidsr.errors import OptionsError
from vidsr.executors.base import Done, Pending
from vidsr.executors.cpu_workers import FuturePending
from vidsr.executors.onnx_export import (
    EXPORT_REVISION,
    centre_crop,
    export_network,
    node_scope,
    plain_module,
    stacked_windows,
)
from vidsr.executors.replica import Compute, Flags, Replica, usable_output
from vidsr.io.atomic_write import atomic_write
from vidsr.io.frames import FrameBatch
from vidsr.models.download import cache_dir
from vidsr.plan.devices import TorchThreads, torch_threads
from vidsr.plan.machine import openvino_unusable

if TYPE_CHECKING:
    from vidsr.archs.spec import ArchSpec
    from vidsr.models.zoo import SRModel
    from vidsr.plan.run_plan import OpenVinoPlan, RunPlan

log = logging.getLogger("vidsr")

# Frames int8 is calibrated on, spread over the clip (or the image folder), and the centre
# square taken of each: activation ranges need variety, not megapixels.
CALIBRATION_FRAMES = 32
CALIBRATION_SIDE = 256
# Input side of the one-off timing behind --runtime auto.
PROBE_SIDE = 128
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: what is not quantised is f32
# See OpenVinoNetwork._first_inference.
_FIRST_INFERENCE = threading.Lock()
_FIRST_INFERENCE_DONE = threading.Event()


def _openvino() -> Any:
    problem = openvino_unusable()
    if problem:
        raise OptionsError(f"--runtime openvino: {problem}")
    import openvino

    return openvino


def runtime_cache() -> Path:
    """Where exported, quantised and compiled networks are kept."""
    return cache_dir() / "openvino"


def weights_key(module: torch.nn.Module, scale: int) -> str:
    """The cache key of a network: the sha256 of its tensors (shapes and fp32 values, in
    order) and the scale. Names are left out: a replica wraps its picture layers, which
    renames their tensors but changes nothing exported."""
    from vidsr.models.zoo import tensor_digest

    return f"{tensor_digest(plain_module(module), with_names=False)[:20]}-x{scale}"


def onnx_for(module: torch.nn.Module, spec: ArchSpec, scale: int) -> Path:
    """The network's ONNX file in the cache, exported now if it is not there yet."""

    path = runtime_cache() / f"{spec.arch}-{weights_key(module, scale)}-e{EXPORT_REVISION}.onnx"
    if not path.is_file():
        # Shared: another run may export the same key at the same time.
        with atomic_write(path, shared=True) as partial:
            export_network(module, spec, partial)
        log.info("exported %s for OpenVINO to %s", spec.arch, path)
    return path


# -- int8 ------------------------------------------------------------------------------------


def calibration_key(source: Path) -> str:
    """Names a calibration source by its path, sizes and modification times."""
    source = source.resolve()
    files = sorted(source.iterdir()) if source.is_dir() else [source]
    digest = hashlib.sha256(str(source).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def calibration_inputs(source: Path, spec: ArchSpec, scale: int,
                       count: int = CALIBRATION_FRAMES) -> list[np.ndarray]:
    """Up to ``count`` frames of ``source`` (a clip, or a folder of images) spread over it,
    as the network takes them (centre crop, model space, padded). A window network gets
    windows of consecutive frames (images in name order), a scene cut or not: activation
    ranges are what calibration needs."""
    from vidsr.io.images import list_images, read_rgb

    space = ModelSpace.of(spec, scale)
    window = spec.window
    runs: list[list[torch.Tensor]] = []  # each sample's frames, oldest first
    if source.is_dir():
        images = list_images(source)
        for start in range(0, max(1, len(images) - window + 1),
                           max(1, len(images) // count))[:count]:
            runs.append([space.from_rgb(read_rgb(path)[None].float() / 255.0)
                         for path in images[start : start + window]])
    else:
        from vidsr.io.decode import open_media

        with open_media(source, batch_size=1) as decoder:  # a media file or a .vpy script
            total = decoder.info.frame_count_estimate or count
            stride = max(1, total // count)
            recent: deque[torch.Tensor] = deque(maxlen=window)
            for index, batch in enumerate(decoder):
                recent.append(space.picture_of(batch, decoder.info.colour))
                if len(recent) == window and (index - window + 1) % stride == 0:
                    runs.append(list(recent))
                if len(runs) >= count:
                    break
    samples = [_network_sample(space, frames, window) for frames in runs
               if len(frames) == window]
    if not samples:
        raise OptionsError(f"{source}: no frames to calibrate int8 on")
    return samples


def _network_sample(space: ModelSpace, frames: list[torch.Tensor], window: int) -> np.ndarray:
    """One calibration input: ``frames`` (each (1, C, h, w)) cropped, in model space, padded,
    in the exported layout."""
    x = space.network_input(centre_crop(torch.cat(frames), CALIBRATION_SIDE))
    return (x if window == 1 else stacked_windows(x.unsqueeze(0))).numpy()


@contextlib.contextmanager
def _errors_only(logger: str) -> Iterator[None]:
    """Only errors from the library logger ``logger`` inside the block."""
    log_ = logging.getLogger(logger)
    saved = log_.level
    log_.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log_.setLevel(saved)


def int8_model(onnx: Path, source: Path, spec: ArchSpec, scale: int) -> Path:
    """The network quantised to int8 by NNCF, calibrated on ``source``: cached IR files."""
    ov = _openvino()
    # The recipe is in the name: a cached model of another recipe is not this one.
    recipe = f"mixed{CALIBRATION_FRAMES}x{CALIBRATION_SIDE}"
    path = onnx.with_name(f"{onnx.stem}-int8-{recipe}-{calibration_key(source)}.xml")
    if path.is_file() and path.with_suffix(".bin").is_file():
        return path
    if importlib.util.find_spec("nncf") is None:
        raise OptionsError("--precision int8 needs NNCF: pip install 'vidsr[openvino]'")
    # Importing NNCF loads torch's extension builder, which warns that there is no CUDA.
    with _errors_only("torch.utils.cpp_extension"):
        import nncf

    samples = calibration_inputs(source, spec, scale)
    log.warning("quantising %s to int8 on %d frames of %s (once; cached in %s)", spec.arch,
                len(samples), source, path.parent)
    model = ov.Core().read_model(str(onnx))
    # The layers that read or write the picture stay f32, as they stay fp32 under bf16
    # (ArchSpec.picture_layers): 8 bits there would hold the picture itself to 256 levels.
    keep = nncf.IgnoredScope(patterns=[re.escape(node_scope(spec, name)) + ".*"
                                       for name in spec.picture_layers], validate=False)
    # NNCF draws progress bars and logs on stdout, which belongs to the caller (vspipe's
    # video, --dry-run's plan); the warning above says what is happening.
    with _errors_only("nncf"), contextlib.redirect_stdout(io.StringIO()):
        # MIXED: asymmetric activations, whose ranges after PReLU are not centred.
        quantised = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples),
                                  ignored_scope=keep, preset=nncf.QuantizationPreset.MIXED)
    with atomic_write(path, shared=True, companions=(".bin",)) as partial:
        ov.save_model(quantised, str(partial), compress_to_fp16=False)
    return path


# -- the forward -----------------------------------------------------------------------------


class OpenVinoNetwork:
    """The replica's network compiled by OpenVINO, one compiled model per input shape.

    Called as the replica's forward (:data:`~vidsr.executors.base.Forward`) from any
    number of worker threads: each thread has its own infer requests.
    """

    def __init__(self, replica: Replica, precision: str, workers: int, threads: int,
                 calibration: Path | None) -> None:
        ov = _openvino()
        self.replica = replica
        self.precision = precision
        onnx = onnx_for(replica.module, replica.spec, replica.scale)
        if precision == "int8":
            if calibration is None:
                raise OptionsError("--precision int8 needs frames to calibrate on: pass"
                                   " --calibration CLIP_OR_IMAGE_FOLDER")
            onnx = int8_model(onnx, calibration, replica.spec, replica.scale)
        self.model_path = onnx
        self._core = ov.Core()
        self._core.set_property({"CACHE_DIR": str(runtime_cache() / "compiled")})
        # Threads not pinned: OpenVINO ties each stream's threads to cores of their own, and
        # where anything else runs (the decoder, the encoder, VapourSynth's filters, other
        # processes) a pinned stream waits for its core while another core is free. Unpinned,
        # compact x4 in bf16 ran 1.85x as fast on a busy 2-core AMD EPYC (benchmarks/RESULTS.md).
        self._config = {"INFERENCE_PRECISION_HINT": _HINTS[precision],
                        "NUM_STREAMS": workers, "INFERENCE_NUM_THREADS": workers * threads,
                        "ENABLE_CPU_PINNING": False}
        self._compiled: dict[tuple[int, ...], Any] = {}
        self._lock = threading.Lock()  # guards _compiled
        self._local = threading.local()  # each thread's infer requests, by shape

    @property
    def compiled_shapes(self) -> list[tuple[int, ...]]:
        """The input shapes compiled so far (whole frames, tiles of each size)."""
        with self._lock:
            return list(self._compiled)

    def compiled(self, shape: tuple[int, ...]) -> Any:
        """The network compiled for input ``shape`` (compiled on first use)."""
        with self._lock:
            compiled = self._compiled.get(shape)
            if compiled is None:
                model = self._core.read_model(str(self.model_path))
                model.reshape(list(shape))
                compiled = self._core.compile_model(model, "CPU", self._config)
                self._compiled[shape] = compiled
            return compiled

    def prepare(self, shape: tuple[int, ...]) -> None:
        """Compile for inputs of ``shape`` now (a window batch's (N, T, C, h, w) as it is
        stacked), not when the first one comes, and run the process's first inference."""
        if len(shape) == 5:
            n, t, c, h, w = shape
            shape = (n, t * c, h, w)
        self.compiled(shape)
        self._first_inference(shape[1])

    def _first_inference(self, channels: int) -> None:
        """Run the process's first inference alone, on a tiny input. OpenVINO's Python
        module sets up static state on first use, waiting for the GIL inside it, and a
        second thread that holds the GIL and waits for that state hangs the process (seen
        in vspipe). On a tiny input the other workers wait milliseconds, not a frame's
        inference (0.6 s of a CIF frame at x4, with both cores of a 2-core CPU idle but one)."""
        if _FIRST_INFERENCE_DONE.is_set():
            return
        with _FIRST_INFERENCE:
            if _FIRST_INFERENCE_DONE.is_set():
                return
            side = 16 * self.replica.space.size_multiple
            tiny = torch.zeros(1, channels, side, side)
            self._infer(self.compiled(tuple(tiny.shape)).create_infer_request(), tiny, [])
            _FIRST_INFERENCE_DONE.set()

    def __call__(self, x: torch.Tensor, fp32: bool, flags: Flags) -> torch.Tensor:
        if fp32 and self.precision != "fp32":
            return self.replica.torch_forward(x, True, flags)  # the redo of a spoilt batch
        if x.ndim == 5:
            x = stacked_windows(x)
        shape = tuple(x.shape)
        requests = self._local.__dict__.setdefault("requests", {})
        request = requests.get(shape)
        if request is None:
            request = requests[shape] = self.compiled(shape).create_infer_request()
        self._first_inference(shape[1])
        return self._infer(request, x, flags)

    @staticmethod
    def _infer(request: Any, x: torch.Tensor, flags: Flags) -> torch.Tensor:
        inputs = x.detach().to("cpu", torch.float32).contiguous().numpy()
        y = torch.from_numpy(request.infer({0: inputs})[0])
        flags.append(usable_output(y))
        return y


# -- the executor ----------------------------------------------------------------------------


class OpenVinoExecutor:
    """Batches on ``replica`` with its forward on OpenVINO; ``plan.workers`` at once."""

    def __init__(self, replica: Replica, plan: OpenVinoPlan) -> None:
        calibration = Path(plan.calibration) if plan.calibration else None
        self.network = OpenVinoNetwork(replica, plan.precision, plan.workers, plan.threads,
                                       calibration)
        self.replica = replica
        replica.use_runtime(self.network)
        self.in_flight = plan.workers
        self._threads = TorchThreads(plan.threads)  # what torch still does: colour, tiles
        self._pool = (ThreadPoolExecutor(plan.workers, thread_name_prefix="vidsr-openvino")
                      if plan.workers > 1 else None)

    def submit(self, batch: FrameBatch, compute: Compute) -> Pending:
        if self._pool is None:
            return Done(self.replica.compute_batch(batch, compute))
        return FuturePending(self._pool.submit(self.replica.compute_batch, batch, compute))

    def close(self) -> None:
        """End the workers (batches still running finish first); safe to call twice."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.replica.use_runtime(None)
        self._threads.restore()


# -- --runtime auto --------------------------------------------------------------------------


def faster_plan(model: SRModel, on_torch: RunPlan, on_openvino: RunPlan) -> RunPlan:
    """Of the plans that run ``model`` on torch and on OpenVINO, the faster: each runs a
    ``PROBE_SIDE`` square in its own precision (bf16 against bf16 where both would run
    it) on a worker's threads, measured once per weights, scale, CPU, threads and
    precisions and kept in the cache (``runtime-choices.json``). The chosen plan's
    runtime reason gives the figures. The plan calls it for ``--runtime auto`` (the caller
    hands it to :func:`~vidsr.plan.run_plan.resolve_plan`), so the plan never imports executors."""
    threads = on_openvino.executor.threads
    torch_precision, openvino_precision = on_torch.precision.name, on_openvino.precision.name
    key = (f"{weights_key(model.module, model.scale)}-e{EXPORT_REVISION} {on_torch.machine.cpu}"
           f" {threads}t"
           f" {'channels_last' if on_torch.channels_last else 'nchw'}"
           f" torch-{torch_precision} openvino-{openvino_precision}")
    store = runtime_cache() / "runtime-choices.json"
    choices = json.loads(store.read_text()) if store.is_file() else {}
    timing = choices.get(key)
    if timing is None:
        timing = _time_runtimes(model, on_torch, on_openvino)
        choices[key] = timing
        store.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(store, shared=True) as partial:
            partial.write_text(json.dumps(choices, indent=1))
    faster = on_openvino if timing["openvino_ms"] < timing["torch_ms"] else on_torch
    reason = (f"auto: a {PROBE_SIDE}x{PROBE_SIDE} input on {threads} thread(s) took OpenVINO"
              f" {openvino_precision} {timing['openvino_ms']:.0f} ms, torch {torch_precision}"
              f" {timing['torch_ms']:.0f} ms (measured once and cached)")
    return replace(faster, runtime=replace(faster.runtime, reason=reason))


def _time_runtimes(model: SRModel, on_torch: RunPlan, on_openvino: RunPlan,
                   repeats: int = 3) -> dict[str, float]:
    """Median milliseconds of each plan's replica on one probe input, interleaved: the
    network as the run would have it (precision, picture layers, memory format)."""
    spec = model.spec
    frames = (spec.window,) if spec.window > 1 else ()
    x = torch.rand(1, *frames, spec.channels, PROBE_SIDE, PROBE_SIDE)
    replicas = {name: Replica(copy.deepcopy(model.module), spec, model.scale,
                              torch.device("cpu"), plan)
                for name, plan in (("torch_ms", on_torch), ("openvino_ms", on_openvino))}
    executor = cast("OpenVinoPlan", on_openvino.executor)
    assert executor.kind == "openvino"
    network = OpenVinoNetwork(replicas["openvino_ms"], executor.precision, 1, executor.threads,
                              None)
    replicas["openvino_ms"].use_runtime(network)
    times: dict[str, list[float]] = {name: [] for name in replicas}
    with torch_threads(executor.threads), torch.inference_mode():
        for replica in replicas.values():
            replica.run_tensor(x)  # compiles, and warms up the caches
        for _ in range(repeats):
            for name, replica in replicas.items():
                start = time.perf_counter()
                replica.run_tensor(x)
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}

"""The run plan: every decision made once, from the machine, the model and the options."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace

import pytest

from vidsr.commands.export import SAMPLE_CLIP
from vidsr.errors import OptionsError
from vidsr.models.zoo import card_network, load_model, model_cards, register_card, unregister_card
from vidsr.plan.machine import Machine, this_machine
from vidsr.plan.precision import MeasuredLoss, choose_precision
from vidsr.plan.run_plan import (
    OVERLAP_CAP,
    CpuOptions,
    CpuWorkersPlan,
    EngineOptions,
    RunPlan,
    SyncPlan,
    plan_cpu_threads,
    refusal,
    resolve_plan,
)
from vidsr.run.transcode import plan_upscale

AMX = Machine(cpu="Test Xeon", cores=2, cpu_capability="AVX512", native_bf16=True)
AVX2 = Machine(cpu="Test EPYC", cores=2, cpu_capability="AVX2", native_bf16=False)


# -- precision ---------------------------------------------------------------------------------


def test_auto_is_bf16_only_on_a_native_bf16_cpu_for_a_model_measured_to_tolerate_it():
    compact = load_model("compact", scale=2)
    chosen = resolve_plan(compact, machine=AMX).precision
    assert chosen.name == "bf16" and "card compact x2" in chosen.reason
    no_bf16 = resolve_plan(compact, machine=AVX2).precision
    assert no_bf16.name == "fp32" and "no native bf16" in no_bf16.reason


def test_auto_stays_fp32_for_weights_bf16_costs_too_much_or_never_measured():
    card = replace(model_cards()["espcn"], name="lossy-espcn",
                   precision_loss={"bf16": {"2": 0.05}})
    register_card(card)
    try:
        lossy = resolve_plan(load_model("lossy-espcn", scale=2), machine=AMX).precision
    finally:
        unregister_card("lossy-espcn")
    assert lossy.name == "fp32" and "0.050 dB" in lossy.reason and "over 0.02" in lossy.reason
    nearest = resolve_plan(load_model("nearest", scale=2), machine=AMX).precision
    assert nearest.name == "fp32" and "not measured" in nearest.reason
    random = load_model("compact", scale=2)
    random.module.body[0].weight.data += 0.01  # other tensors: the card's figures do not hold
    random = replace(random, card_weights=False)
    assert resolve_plan(random, machine=AMX).precision.name == "fp32"


def test_a_weights_file_with_a_bundled_cards_tensors_gets_that_cards_figures(tmp_path):
    from vidsr.models.weights_file import save_state_dict

    bundled = load_model("compact", scale=4)
    path = tmp_path / "my_compact.safetensors"
    save_state_dict(path, bundled.module.state_dict())
    mine = load_model("compact", scale=4, weights=path)
    assert not mine.card_weights
    measured = mine.measured_loss()
    assert measured.source == "same tensors as card compact x4"
    assert resolve_plan(mine, machine=AMX).precision.name == "bf16"


def test_bf16_on_a_cpu_without_native_bf16_warns_or_is_refused_with_strict(caplog):
    model = load_model("compact", scale=2)
    with caplog.at_level(logging.WARNING, logger="vidsr"):
        plan = resolve_plan(model, EngineOptions(precision="bf16"), machine=AVX2)
    assert plan.precision.name == "bf16"
    assert len(caplog.records) == 1 and "many times slower" in caplog.text
    with pytest.raises(OptionsError, match="no native bf16"):
        resolve_plan(model, EngineOptions(precision="bf16", strict=True), machine=AVX2)


def test_fp16_on_cuda_follows_the_measurement_and_the_cpu_refuses_it():
    tolerant = MeasuredLoss({"fp16": 0.001}, "card x")
    assert choose_precision("auto", "cuda", AVX2, tolerant).name == "fp16"
    lossy = MeasuredLoss({"fp16": 0.3}, "card y")
    assert choose_precision("auto", "cuda", AVX2, lossy).name == "fp32"
    with pytest.raises(OptionsError, match="fp16 is not usable on the CPU"):
        choose_precision("fp16", "cpu", AMX, tolerant)
    assert choose_precision("fp16", "cpu", AMX, tolerant, measuring=True).name == "fp16"


# -- tiles ---------------------------------------------------------------------------------------


def test_overlap_is_the_receptive_radius_capped_for_huge_ones():
    vdsr = resolve_plan(load_model("vdsr", scale=4), EngineOptions(tile=64), machine=AMX).tile
    assert (vdsr.size, vdsr.overlap) == (64, 20) and "receptive radius" in vdsr.reason
    card = model_cards()["realesrgan-x4plus"]
    full = card_network(card, 4)  # meta: the descriptor without weights
    rrdb = load_model("nearest", scale=4)
    rrdb = replace(rrdb, module=full, spec=full.spec)
    tile = resolve_plan(rrdb, machine=AMX).tile
    assert tile.overlap == OVERLAP_CAP and "(349 px) capped" in tile.reason
    asked = resolve_plan(load_model("vdsr", scale=4), EngineOptions(tile=64, tile_overlap=8),
                     machine=AMX).tile
    assert asked.overlap == 8 and "seams may show" in asked.reason


def test_tiles_below_the_minimum_are_refused():
    with pytest.raises(OptionsError, match="--tile 8 is too small"):
        resolve_plan(load_model("nearest", scale=2), EngineOptions(tile=8), machine=AMX)


# -- executor, batch, threads -----------------------------------------------------------------


def test_a_video_run_on_two_cores_gets_two_one_thread_workers_and_one_frame_batches():
    plan = resolve_plan(load_model("compact", scale=2), EngineOptions(device="cpu"), machine=AMX,
                    overlapped=True)
    assert plan.executor == CpuWorkersPlan(workers=2, threads=1)
    assert (plan.batch_size, plan.decoder_threads) == (1, 1)
    one_core = resolve_plan(load_model("compact", scale=2), machine=replace(AMX, cores=1),
                        overlapped=True)
    assert one_core.executor == SyncPlan(threads=1)


def test_images_get_every_core_in_one_synchronous_batch():
    plan = resolve_plan(load_model("compact", scale=2), EngineOptions(device="cpu"),
                    machine=replace(AMX, cores=6))
    assert plan.executor == SyncPlan(threads=6) and plan.decoder_threads == 0


def test_the_callers_workers_and_threads_are_kept():
    model = load_model("nearest", scale=2)
    mine = resolve_plan(model, EngineOptions(cpu=CpuOptions(workers=3, threads=2)), machine=AMX,
                    overlapped=True)
    assert mine.executor == CpuWorkersPlan(workers=3, threads=2)


def test_cpu_thread_split():
    two = plan_cpu_threads(2)
    assert (two.workers, two.torch, two.decoder, two.encoder) == (2, 1, 1, 2)
    four = plan_cpu_threads(4)
    assert (four.workers, four.torch, four.decoder) == (3, 1, 1)
    many = plan_cpu_threads(16)
    assert (many.workers, many.torch) == (2, 7) and many.decoder == many.encoder == 4
    assert plan_cpu_threads(1).workers == 1


def test_mixed_devices_are_refused():
    with pytest.raises(OptionsError, match="several devices need CUDA"):
        resolve_plan(load_model("nearest", scale=2), EngineOptions(device="cpu,cpu"), machine=AMX)


# -- a video's plan -----------------------------------------------------------------------------


def test_the_plan_of_a_video_run_is_printable_and_writes_nothing(clip, tmp_path):
    src = clip("in.mkv", audio="aac", frames=4)
    dst = tmp_path / "out.mp4"
    plan = plan_upscale(src, dst, model="nearest", scale=2)
    assert not dst.exists() and sorted(tmp_path.iterdir()) == [src]
    data = json.loads(plan.to_json())
    assert data["executor"]["kind"] in ("cpu-workers", "sync")
    assert data["output"]["container"] == "mp4"
    assert (data["output"]["width"], data["output"]["height"]) == (128, 96)
    assert data["output"]["streams"][0]["copied"] is True
    assert data["source"]["path"] == str(src)
    text = plan.to_text()
    for row in ("machine", "precision", "executor", "tiles", "source", "output", "encoder",
                "stream"):
        assert f"\n{row} " in f"\n{text}", row


def test_the_dry_run_json_rebuilds_the_plan_made_in_process(tmp_path):
    """``vidsr IN OUT --dry-run --json`` in its own process prints the plan this process
    makes for the same file and options, and it reads back equal, field for field."""
    dst = tmp_path / "out.mkv"
    printed = subprocess.run(
        [sys.executable, "-m", "vidsr", str(SAMPLE_CLIP), str(dst), "--model", "espcn",
         "--scale", "2", "--dry-run", "--json"],
        capture_output=True, text=True, check=True)
    plan = plan_upscale(SAMPLE_CLIP, dst, model="espcn", scale=2)
    assert plan.source is not None and plan.output is not None and plan.output.streams
    assert RunPlan.from_json(printed.stdout) == plan
    assert RunPlan.from_json(plan.to_json()).to_json() == plan.to_json()
    assert not dst.exists()


def test_a_plan_is_refused_only_where_its_device_is_missing():
    model = load_model("nearest", scale=2)
    on_cpu = resolve_plan(model, EngineOptions(device="cpu"), machine=AMX)
    assert refusal(on_cpu, AMX) is None
    two_gpus = replace(on_cpu, devices=("cuda:0", "cuda:1"))
    assert refusal(two_gpus, replace(AMX, cuda_devices=("A", "B"))) is None
    assert refusal(two_gpus, replace(AMX, cuda_devices=("A",))) == (
        "the plan runs on cuda:1, and this machine has 1 CUDA device(s)")
    # Threads and batches planned for another machine only change the speed.
    elsewhere = replace(on_cpu, machine=replace(this_machine(), cores=64), batch_size=16)
    assert refusal(elsewhere, AMX) is None

"""The contract every architecture keeps, checked on tiny configs of each one.

Output shape per scale, fp16 vs fp32 on CPU, a round trip through a
safetensors file, odd input sizes after padding to ``size_multiple``, and
unambiguous detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from vidsr.archs import ARCHITECTURES, create_arch, load_arch_from_state_dict
from vidsr.errors import ModelError
from vidsr.models.weights_file import read_state_dict, save_state_dict


@dataclass(frozen=True)
class Case:
    arch: str
    config: dict[str, Any]
    # Hyperparameters shapes cannot tell, passed again when loading.
    unreadable: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.arch + "-" + "-".join(f"{k}={v}" for k, v in self.config.items())


RRDB = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
EDSR = {"num_feat": 8, "num_block": 2}
WDSR = {"num_feat": 8, "num_block": 2}
CASES = [
    *(Case("rrdb", {**RRDB, "scale": s}) for s in (1, 2, 4)),
    Case("rrdb", {**RRDB, "scale": 4, "plus": True}),
    Case("rrdb", {**RRDB, "scale": 8}),
    Case("vdsr", {"num_feat": 8, "num_layers": 4}),
    *(Case("espcn", {"scale": s, "num_feat": 8, "num_mid": 4}) for s in (2, 3, 4)),
    Case("espcn", {"scale": 3, "channels": 3, "num_feat": 8, "num_mid": 4, "activation": "tanh"},
         unreadable={"activation": "tanh"}),
    *(Case("edsr", {**EDSR, "scale": s}) for s in (2, 3, 4)),
    *(Case("wdsr", {**WDSR, "variant": v, "scale": s}) for v in ("a", "b") for s in (2, 3, 4)),
    Case("rednet", {"channels": 1, "num_feat": 8, "depth": 6}),
    Case("rednet", {"channels": 3, "num_feat": 8, "depth": 8}),
    *(Case("compact", {"num_feat": 8, "num_conv": 2, "scale": s}) for s in (2, 4)),
    Case("compact", {"num_feat": 8, "num_conv": 2, "scale": 3, "act_type": "relu"}),
    *(Case("temporal", {"num_feat": 8, "num_conv": 2, "num_refine": 1, "radius": r, "scale": s})
      for r, s in ((1, 2), (2, 4))),
]


def _build(case: Case) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_arch(case.arch, **case.config).eval()


def _input(model: torch.nn.Module, height: int = 16, width: int = 16) -> torch.Tensor:
    """One frame; a network that sees windows takes it as a still window."""
    torch.manual_seed(1)
    return torch.rand(1, model.spec.channels, height, width)


def _expected_size(model: torch.nn.Module, height: int, width: int) -> tuple[int, int]:
    spec = model.spec
    if spec.pre_upsampled:
        return height, width
    return height * spec.scales[0], width * spec.scales[0]


def test_every_architecture_has_a_case() -> None:
    assert {case.arch for case in CASES} == set(ARCHITECTURES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_output_shape_and_spec(case: Case) -> None:
    model = _build(case)
    spec = model.spec
    assert spec.arch == case.arch
    assert spec.config.items() >= case.config.items()
    if "scale" in case.config:
        assert spec.scales == (case.config["scale"],)
    with torch.no_grad():
        out = model(_input(model))
    assert out.shape == (1, spec.channels, *_expected_size(model, 16, 16))
    assert out.dtype == torch.float32


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_picture_layers_exist_and_reduced_precision_stays_close(case: Case) -> None:
    from engines import engine_for

    from vidsr.models.zoo import SRModel
    from vidsr.plan.run_plan import EngineOptions

    model = _build(case)
    # The first and last layers, that read and write the picture, are named by the spec.
    assert len(model.spec.picture_layers) >= 2
    for name in model.spec.picture_layers:
        assert any(True for _ in model.get_submodule(name).parameters()), name
    x = _input(model)
    sr = SRModel.from_module(model.eval(), max(model.spec.scales))
    full, reduced = (engine_for(sr, EngineOptions(device="cpu", precision=p))
                     .run_network(x) for p in ("fp32", "bf16"))
    assert torch.allclose(reduced, full, atol=2e-2, rtol=2e-2), (reduced - full).abs().max()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_round_trip_through_safetensors(case: Case, tmp_path: Path) -> None:
    model = _build(case)
    path = tmp_path / "weights.safetensors"
    save_state_dict(path, model.state_dict(), metadata={"arch": case.arch})
    loaded = load_arch_from_state_dict(read_state_dict(path), config=case.unreadable)
    assert type(loaded) is type(model)
    assert loaded.spec == model.spec
    x = _input(model)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_odd_sizes_work_after_padding_to_size_multiple(case: Case) -> None:
    model = _build(case)
    multiple = model.spec.size_multiple
    height, width = 13, 17
    x = _input(model, height, width)
    pad_h, pad_w = -height % multiple, -width % multiple
    padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    with torch.no_grad():
        out = model(padded)
    out_h, out_w = _expected_size(model, height, width)
    assert out[..., :out_h, :out_w].shape == (1, model.spec.channels, out_h, out_w)
    if multiple > 1:
        with pytest.raises(ModelError, match="size_multiple"):
            model(x)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_detected_by_exactly_its_own_architecture(case: Case) -> None:
    state_dict = _build(case).state_dict()
    assert [a.name for a in ARCHITECTURES.values() if a.detect(state_dict)] == [case.arch]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_builds_on_meta_device_with_same_shapes(case: Case) -> None:
    # models/zoo.py sizes networks this way without allocating their weights.
    with torch.device("meta"):
        meta = create_arch(case.arch, **case.config)
    real = _build(case).state_dict()
    shapes = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in real.items()}
    assert all(v.is_meta for v in meta.state_dict().values())

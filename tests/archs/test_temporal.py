"""The temporal (window) network: grown from frame-wise archival it is that model at step 0."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidsr.archs import ARCHITECTURES, create_arch, load_arch_from_state_dict
from vidsr.archs.compact import SRVGGNetCompact
from vidsr.archs.temporal import WindowCompact, from_frame_model, grow
from vidsr.errors import ModelError
from vidsr.models.weights_file import read_state_dict
from vidsr.models.zoo import WEIGHTS_DIR

SMALL = {"num_feat": 8, "num_conv": 2, "num_refine": 1, "radius": 1, "scale": 2}


@pytest.mark.parametrize("scale", [2, 4])
def test_grown_from_archival_it_equals_archival_at_step_0(scale: int) -> None:
    archival = load_arch_from_state_dict(
        read_state_dict(WEIGHTS_DIR / f"vidsr_archival_x{scale}.safetensors"))
    model = from_frame_model(archival, radius=2, num_refine=2).eval()
    assert model.spec.window == 5 and archival.spec.window == 1
    torch.manual_seed(0)
    windows = torch.rand(2, 5, 3, 20, 24)
    with torch.no_grad():
        difference = (model(windows) - archival(windows[:, 2])).abs().max()
    # The same arithmetic; only the summation order of the first conv differs (the
    # neighbours' zero channels sit between the centre's in channels_last).
    assert float(difference) < 2e-6


def test_round_trip_through_safetensors(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = create_arch("temporal", **SMALL).eval()
    path = tmp_path / "temporal.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = load_arch_from_state_dict(read_state_dict(path))
    assert isinstance(loaded, WindowCompact)
    assert loaded.spec.config == {**SMALL, "num_in_ch": 3, "act_type": "prelu"}
    assert loaded.spec.window == 3 and loaded.spec.receptive_radius == 2 + 2 + 2
    windows = torch.rand(1, 3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(windows), loaded(windows))
        assert model(windows).shape == (1, 3, 16, 16)


def test_detection_tells_temporal_from_compact() -> None:
    temporal = create_arch("temporal", **SMALL).state_dict()
    compact = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2).state_dict()
    assert [a.name for a in ARCHITECTURES.values() if a.detect(temporal)] == ["temporal"]
    assert [a.name for a in ARCHITECTURES.values() if a.detect(compact)] == ["compact"]


def test_a_single_frame_is_a_still_window() -> None:
    torch.manual_seed(2)
    model = create_arch("temporal", **SMALL).eval()
    frame = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(frame), model(frame[:, None].expand(-1, 3, -1, -1, -1)))
    with pytest.raises(ModelError, match=r"expects \(N, 3, C, H, W\) windows"):
        model(torch.rand(1, 5, 3, 8, 8))


def test_grow_keeps_the_frame_model_and_refuses_other_shapes() -> None:
    frame = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2)
    grown = grow(frame, {"num_feat": 8, "num_conv": 2, "radius": 1, "num_refine": 1})
    assert grown.config == {**SMALL, "num_in_ch": 3, "act_type": "prelu"}
    assert ARCHITECTURES["temporal"].grow is grow
    with pytest.raises(ModelError, match="cannot take num_feat = 16"):
        grow(frame, {"num_feat": 16})

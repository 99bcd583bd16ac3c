"""`vidsr export`: every architecture to ONNX (tiny configs), run by ONNX Runtime vs torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidsr.__main__ import main
from vidsr.archs import ARCHITECTURES, create_arch
from vidsr.commands.export import export_model, run_onnx, sample_frame
from vidsr.errors import ModelError
from vidsr.executors.onnx_export import OPSET, export_network
from vidsr.models.zoo import SRModel, load_model

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra (vidsr[onnx])")
pytest.importorskip("onnxruntime", reason="the check runs ONNX Runtime (vidsr[onnx])")

# One tiny config per architecture, and the variants whose graphs differ (pixel shuffle
# by 3, the RRDB 'plus' layout, WDSR's two bodies, a 3-channel RED-Net).
TINY = [
    ("rrdb", {"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 4}),
    ("rrdb", {"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 2, "plus": True}),
    ("vdsr", {"num_feat": 8, "num_layers": 4}),
    ("espcn", {"scale": 3, "num_feat": 8, "num_mid": 4}),
    ("edsr", {"num_feat": 8, "num_block": 2, "scale": 2}),
    ("wdsr", {"num_feat": 8, "num_block": 2, "variant": "a", "scale": 4}),
    ("wdsr", {"num_feat": 8, "num_block": 2, "variant": "b", "scale": 3}),
    ("rednet", {"channels": 3, "num_feat": 8, "depth": 6}),
    ("compact", {"num_feat": 8, "num_conv": 2, "scale": 4}),
]


# Architectures that see a window of frames: their input layout differs (tests below).
WINDOWED = {"temporal"}


def test_every_architecture_has_a_case() -> None:
    assert {arch for arch, _ in TINY} | WINDOWED == set(ARCHITECTURES)


@pytest.mark.parametrize("channels", [3, 1])
def test_a_window_model_takes_its_frames_stacked_on_channels_oldest_first(tmp_path, channels):
    torch.manual_seed(0)
    module = create_arch("temporal", num_in_ch=channels, num_feat=8, num_conv=2, radius=2,
                         scale=2).eval()
    path = export_network(module, module.spec, tmp_path / "t.onnx")
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 5 * channels, "H", "W"]
    # Five distinct frames, so a wrong order of frames or of channels within a frame shows.
    windows = torch.rand(2, 5, channels, 21, 17)
    with torch.inference_mode():
        expected = module(windows).numpy()
    stacked = np.concatenate([windows[:, t].numpy() for t in range(5)], axis=1)
    got = run_onnx(path, stacked, "onnxruntime")
    assert got.shape == expected.shape == (2, channels, 42, 34)
    assert float(np.abs(got - expected).max()) < 1e-5
    reversed_frames = np.concatenate([windows[:, t].numpy() for t in reversed(range(5))], axis=1)
    assert float(np.abs(run_onnx(path, reversed_frames, "onnxruntime") - expected).max()) > 1e-3


def test_a_window_model_is_checked_on_real_consecutive_frames(tmp_path, temporal, capsys):
    out = tmp_path / "temporal.onnx"
    assert main(["export", str(temporal), "--scale", "2", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "input N x 9 x H x W (3 frames x 3 channels, oldest first)" in err
    model = load_model(str(temporal), scale=2)
    report = export_model(model, tmp_path / "again.onnx")
    assert report.max_difference is not None and report.max_difference < 1e-5
    frames = sample_frame(model.spec, 2)
    assert frames.shape == (1, 9, 96, 96)
    # Three real frames of a moving clip: alike but not the same frame three times.
    assert 0 < float((frames[:, 0:3] - frames[:, 6:9]).abs().mean()) < 0.1


@pytest.mark.parametrize(("arch", "config"), TINY,
                         ids=[f"{a}-{'-'.join(map(str, c.values()))}" for a, c in TINY])
def test_onnx_of_each_architecture_matches_torch_at_other_sizes(tmp_path, arch, config):
    torch.manual_seed(0)
    module = create_arch(arch, **config).eval()
    spec = module.spec
    path = export_network(module, spec, tmp_path / f"{arch}.onnx")
    # Another batch and size than the export traced (odd where the network allows it).
    m = spec.size_multiple
    x = torch.rand(2, spec.channels, 19 * m, 13 * m)
    with torch.inference_mode():
        expected = module(x).numpy()
    got = run_onnx(path, x.numpy(), "onnxruntime")
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).max()) < 1e-5


def test_bundled_model_is_checked_on_a_real_frame(tmp_path):
    model = load_model("compact", scale=2)
    report = export_model(model, tmp_path / "compact.onnx")
    assert report.verified_on == "onnxruntime"
    assert report.max_difference is not None and report.max_difference < 1e-5
    graph = onnx.load(str(report.path))
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "H", "W"]
    # The check frame is a picture, not noise: the bundled clip's centre, smooth-ish.
    frame = sample_frame(model.spec, 2)
    assert frame.shape == (1, 3, 96, 96) and 0.05 < float(frame.std()) < 0.4


def test_a_pre_upsampling_luma_model_takes_the_upscaled_picture(tmp_path):
    torch.manual_seed(0)
    model = SRModel.from_module(create_arch("vdsr", num_feat=8, num_layers=4).eval(), 3)
    report = export_model(model, tmp_path / "vdsr.onnx")
    assert report.output_shape == "N x 1 x H x W"  # the picture comes in at the output size
    assert report.max_difference is not None and report.max_difference < 1e-5
    assert sample_frame(model.spec, 3).shape == (1, 1, 96, 96)  # a 32-pixel crop, upscaled


def test_resizers_have_nothing_to_export(tmp_path):
    with pytest.raises(ModelError, match="no network to export"):
        export_model(load_model("bicubic", scale=2), tmp_path / "b.onnx")


def test_cli_prints_the_difference_and_writes_the_file(tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", "compact", "--scale", "4", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert out.is_file() and "opset 17" in err and "max difference" in err
    assert main(["export", "nearest", "-o", str(tmp_path / "n.onnx")]) == 1
    assert capsys.readouterr().err.strip() == (
        "vidsr: error: nearest is an exact resizer with no network to export")


def test_without_a_runtime_to_check_on_the_error_says_what_to_install(tmp_path, capsys,
                                                                       monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name in
                        ("onnxruntime", "openvino") else real(name, *rest))
    out = tmp_path / "c.onnx"
    assert main(["export", "compact", "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"vidsr: error: wrote {out}, but nothing here runs ONNX to check it:"
        " pip install 'vidsr[onnx]' (ONNX Runtime), or pass --no-verify"]
    assert main(["export", "compact", "-o", str(out), "--no-verify"]) == 0


@pytest.mark.slow  # the dynamo exporter takes seconds even for a tiny network
def test_dynamo_exporter_writes_opset_18(tmp_path):
    pytest.importorskip("onnxscript", reason="torch's dynamo exporter needs onnxscript")
    torch.manual_seed(0)
    module = create_arch("compact", num_feat=8, num_conv=2, scale=2).eval()
    path = export_network(module, module.spec, tmp_path / "d.onnx", dynamo=True)
    graph = onnx.load(str(path))
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [18]
    x = torch.rand(1, 3, 21, 17)
    with torch.inference_mode():
        expected = module(x).numpy()
    assert float(np.abs(run_onnx(path, x.numpy(), "onnxruntime") - expected).max()) < 1e-5

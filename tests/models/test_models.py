"""The model registry, load_model, and the weights cache (against a local HTTP server)."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import torch

from vidsr.errors import ModelError, WeightsError
from vidsr.models.zoo import (
    ModelCard,
    WeightsSource,
    card_network,
    count_flops_per_pixel,
    load_model,
    model_cards,
    register_card,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
ESPCN_X2 = REPO / "vidsr" / "weights" / "espcn_opencv_x2.safetensors"


@pytest.mark.parametrize(("name", "scale", "arch", "space"), [
    ("espcn", 2, "espcn", "y"), ("espcn", 3, "espcn", "y"), ("espcn", 4, "espcn", "y"),
    ("vdsr", 2, "vdsr", "y"), ("vdsr", 3, "vdsr", "y"), ("vdsr", 4, "vdsr", "y"),
    ("realesr-animevideov3", 4, "compact", "rgb"),
    ("nearest", 3, "nearest", "planes"), ("bicubic", 2, "bicubic", "planes"),
])
def test_bundled_models_load_at_each_scale(name, scale, arch, space):
    model = load_model(name, scale=scale)
    assert (model.spec.arch, model.scale, model.spec.input_space) == (arch, scale, space)
    assert not model.module.training
    x = torch.rand(1, model.spec.channels, 8, 8)
    if model.spec.pre_upsampled:
        x = torch.nn.functional.interpolate(x, scale_factor=scale)
    with torch.no_grad():
        y = model.module(x)
    assert y.shape[-2:] == (8 * scale, 8 * scale)


def test_default_scale_is_the_largest():
    assert load_model("espcn").scale == 4
    assert load_model("realesr-animevideov3").scale == 4


def test_a_weights_file_is_a_model():
    model = load_model(ESPCN_X2)
    assert (model.name, model.spec.arch, model.scale) == ("espcn_opencv_x2", "espcn", 2)


def test_parameter_free_models_refuse_weights():
    with pytest.raises(ModelError, match="has no weights"):
        load_model("bicubic", scale=2, weights=ESPCN_X2)


def test_card_networks_report_parameters_and_flops():
    anime = model_cards()["realesrgan-x4plus-anime"]
    net = card_network(anime, 4)
    assert sum(p.numel() for p in net.parameters()) == 4_467_779  # upstream's count
    x4plus = card_network(model_cards()["realesrgan-x4plus"], 4)
    assert sum(p.numel() for p in x4plus.parameters()) == 16_697_987
    # ESPCN x4 on luma: 5x5 1->64, 3x3 64->32, 3x3 32->16 multiply-adds, plus the biases.
    espcn = card_network(model_cards()["espcn"], 4)
    macs = 25 * 64 + 9 * 64 * 32 + 9 * 32 * 16
    flops = count_flops_per_pixel(espcn, espcn.spec, 4)
    assert flops == pytest.approx(2 * macs, rel=0.01)


@pytest.mark.parametrize("name", [n for n, c in model_cards().items()
                                  if any(w.bundled for w in c.weights.values())])
def test_a_card_describes_the_network_its_bundled_weights_build(name):
    # `vidsr models` counts weights and FLOPs from the card alone, scale by scale.
    card = model_cards()[name]
    for scale in card.scales:
        described = card_network(card, scale)
        built = load_model(name, scale=scale).module
        assert ([tuple(p.shape) for p in described.parameters()]
                == [tuple(p.shape) for p in built.parameters()]), f"{name} x{scale}"


# -- downloads: a real HTTP server on loopback, never the internet ----------------------


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 - the stdlib's name
        type(self).hits.append(self.path)
        super().do_GET()


@pytest.fixture
def weights_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(ESPCN_X2, served / "espcn_x2.safetensors")
    handler = type("Handler", (_CountingHandler,), {"hits": []})

    def make(*args, **kwargs):
        return handler(*args, directory=str(served), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.hits
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _forget_test_cards():
    yield
    model_cards().pop("test-remote-espcn", None)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("VIDSR_CACHE_DIR", str(path))
    return path


def _card(url: str, sha256: str | None) -> ModelCard:
    return ModelCard(
        name="test-remote-espcn", arch="espcn", scales=(2,), description="", licence="test",
        weights={"2": WeightsSource(url=url, sha256=sha256, filename="espcn_x2.safetensors")},
    )


def test_download_once_then_from_cache(weights_server, cache):
    base, hits = weights_server
    digest = hashlib.sha256(ESPCN_X2.read_bytes()).hexdigest()
    register_card(_card(f"{base}/espcn_x2.safetensors", digest))
    model = load_model("test-remote-espcn", scale=2)
    assert model.weights_path == cache / "espcn_x2.safetensors"
    assert model.weights_path.read_bytes() == ESPCN_X2.read_bytes()
    load_model("test-remote-espcn", scale=2)
    assert hits == ["/espcn_x2.safetensors"]  # the second load did not download


def test_wrong_checksum_is_refused_and_nothing_is_kept(weights_server, cache):
    base, _ = weights_server
    register_card(_card(f"{base}/espcn_x2.safetensors", "0" * 64))
    with pytest.raises(WeightsError, match="sha256"):
        load_model("test-remote-espcn", scale=2)
    assert not any(cache.iterdir()) if cache.exists() else True


def test_unreachable_url_says_what_to_do(weights_server, cache):
    base, _ = weights_server
    register_card(_card(f"{base}/missing.safetensors", None))
    with pytest.raises(WeightsError, match="download it yourself and pass --weights"):
        load_model("test-remote-espcn", scale=2)


def test_unpinned_download_is_pinned_on_first_use(weights_server, cache):
    base, _ = weights_server
    register_card(_card(f"{base}/espcn_x2.safetensors", None))
    load_model("test-remote-espcn", scale=2)
    pin = cache / "espcn_x2.safetensors.sha256"
    assert pin.read_text().strip() == hashlib.sha256(ESPCN_X2.read_bytes()).hexdigest()


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (real weights)")
def test_a_cached_realesrgan_file_is_used_without_downloading(cache):
    cache.mkdir()
    shutil.copy(SHARED / "weights" / "realesrgan" / "RealESRGAN_x4plus_anime_6B.pth",
                cache / "RealESRGAN_x4plus_anime_6B.pth")
    model = load_model("realesrgan-x4plus-anime")
    assert (model.spec.arch, model.scale, model.parameter_count) == ("rrdb", 4, 4_467_779)

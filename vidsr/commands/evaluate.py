"""``vidsr eval``: PSNR / SSIM of a model on a folder of HR images, the papers' way.

The protocol itself is :mod:`vidsr.imaging.scoring`'s; this is the command: load the model,
score the folder, format the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vidsr.imaging.scoring import evaluate_folder
from vidsr.models.zoo import load_model

if TYPE_CHECKING:
    from vidsr.plan.precision import Precision
    from vidsr.plan.run_plan import Runtime


def run_eval(
    model_name: str,
    folder: str | Path,
    scale: int | None,
    *,
    weights: str | Path | None = None,
    device: str = "cpu",
    precision: Precision = "fp32",
    as_json: bool = False,
    allow_unsafe: bool = False,
    runtime: Runtime = "torch",
    calibration: Path | None = None,
    strength: float | None = None,
) -> str:
    """What ``vidsr eval`` prints: load the model, evaluate ``folder``, format the report.

    ``scale`` None takes the model's default (its largest) scale.
    """
    model = load_model(model_name, scale=scale, weights=weights, allow_unsafe=allow_unsafe,
                       strength=strength)
    report = evaluate_folder(model, Path(folder), model.scale, device=device, precision=precision,
                             runtime=runtime, calibration=calibration)
    return report.to_json() if as_json else report.to_text()

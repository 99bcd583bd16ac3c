"""Network interpolation (ESRGAN): blend two trained networks of one architecture.

``(1 - alpha) * a + alpha * b`` parameter by parameter, typically a
PSNR-oriented and a GAN-trained model, trading fidelity for texture without
retraining. At alpha 0 and 1 the inputs come back bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from vidsr.errors import OptionsError, WeightsError


def interpolate_state_dicts(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
                            alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * a + alpha * b`` for every floating tensor; integer tensors must agree."""
    if not 0.0 <= alpha <= 1.0:
        raise OptionsError(f"alpha must be in [0, 1], found {alpha}")
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise WeightsError("the two networks differ in layout (not one architecture and "
                           f"config): only in the first {only_a[:3]}, only in the second "
                           f"{only_b[:3]}")
    out: dict[str, torch.Tensor] = {}
    for key, ta in a.items():
        tb = b[key]
        if ta.shape != tb.shape:
            raise WeightsError(f"{key!r} has shape {tuple(ta.shape)} in the first network and "
                               f"{tuple(tb.shape)} in the second; they are not one config")
        if alpha == 0.0:
            out[key] = ta.clone()
        elif alpha == 1.0:
            out[key] = tb.clone()
        elif ta.is_floating_point():
            # Blend in float64 so a bf16/fp16 pair rounds once, at the end.
            mixed = (1 - alpha) * ta.double() + alpha * tb.to(ta.device).double()
            out[key] = mixed.to(ta.dtype)
        elif torch.equal(ta, tb):
            out[key] = ta.clone()
        else:
            raise WeightsError(f"integer tensor {key!r} differs between the networks and "
                               "cannot be blended")
    return out


def interpolate_checkpoints(a: Path | str, b: Path | str, alpha: float,
                            out: Path | str) -> Path:
    """Blend two weights files (any format ``vidsr.models.weights_file`` reads) into
    ``out`` (safetensors).

    Both must be one architecture with one config, which is checked by loading
    both through the architecture detection, not just by comparing keys.
    """
    from vidsr.archs import load_arch_from_state_dict
    from vidsr.models.weights_file import read_state_dict, save_state_dict

    sd_a, sd_b = read_state_dict(Path(a)), read_state_dict(Path(b))
    spec_a = load_arch_from_state_dict(sd_a).spec
    spec_b = load_arch_from_state_dict(sd_b).spec
    if (spec_a.arch, dict(spec_a.config)) != (spec_b.arch, dict(spec_b.config)):
        raise WeightsError(f"{a} is {spec_a.arch} {dict(spec_a.config)} but {b} is "
                           f"{spec_b.arch} {dict(spec_b.config)}; interpolation needs one "
                           "architecture and config")
    blended = interpolate_state_dicts(sd_a, sd_b, alpha)
    out = Path(out)
    save_state_dict(out, blended, {"arch": spec_a.arch, "interpolated": f"{a} | {b} | {alpha}"})
    return out

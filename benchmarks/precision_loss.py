"""What each reduced precision costs every bundled model on Set5, for the model cards.

    python benchmarks/precision_loss.py ../shared/data/images/Set5 [MODEL ...]

Runs ``vidsr eval``'s protocol in fp32, bf16 and fp16 (fp16 on the CPU here, which
rounds as CUDA's fp16 does) at every scale a card serves, and prints the loss
against fp32 as the ``precision_loss`` table each card in vidsr/weights/cards.toml
carries. The run plan's ``auto`` precision reads those tables: a loss of at most
0.02 dB counts as tolerated.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vidsr.imaging.scoring import evaluate_folder
from vidsr.models.zoo import load_model, model_cards
from vidsr.plan.machine import this_machine


def main(folder: Path, names: list[str]) -> None:
    print(f"# measured on {this_machine().describe_cpu()}")
    for card in model_cards().values():
        if card.parameter_free or (names and card.name not in names):
            continue
        if not all(card.weights_for(s) and card.weights_for(s).bundled for s in card.scales):
            continue
        losses: dict[str, dict[int, float]] = {"bf16": {}, "fp16": {}}
        for scale in card.scales:
            model = load_model(card.name, scale=scale)
            fp32 = evaluate_folder(model, folder, scale, precision="fp32").mean_psnr
            for precision in losses:
                reduced = evaluate_folder(model, folder, scale, precision=precision).mean_psnr
                losses[precision][scale] = round(fp32 - reduced, 4)
            print(f"# {card.name} x{scale}: fp32 {fp32:.3f} dB", flush=True)
        table = ", ".join(
            f"{precision} = {{ {', '.join(f'{s} = {v}' for s, v in by_scale.items())} }}"
            for precision, by_scale in losses.items())
        print(f"[{card.name}]\nprecision_loss = {{ {table} }}\n", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])

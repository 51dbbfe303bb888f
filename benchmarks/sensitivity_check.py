"""Does measured sensitivity place 8-bit blocks better than the fixed rule? (issue 15's first done-when check)

Without training: quantize smollm2-135m with 8 bits on the 6 most sensitive blocks (by the seed-0 calibration
table) and 4-bit NF4 elsewhere, and with 8 bits on the rule's 6 blocks (first 3 + last 3 of 30), evaluate WikiText-2
test perplexity (`training.eval_tokens`, default 16,384 tokens in 256-token blocks, float32 compute), and report the
Spearman rank correlation of the sensitivity order between two calibration samples (seeds 0 and 1).

The smollm2-135m preset's weights come from a 4-bit Q4_1 GGUF: NF4 re-quantizes already-4-bit weights, so every
4-bit vs 16/32-bit figure here understates what NF4 costs a model released in 16 bits.

    PYTHONPATH=. RANKBITS_DATA_DIR=../shared/data nice -n 15 python benchmarks/sensitivity_check.py [--extra]

Tables are read from (or written to) the sensitivity cache; each new one takes minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time

from scipy.stats import spearmanr

from spaces.grid import critical_layers
from trainables.config import TrialConfig
from trainables.sensitivity import SensitivitySettings, load_or_measure

MODEL, TASK, LAYERS = "smollm2-135m", "wikitext2", 30


def base_config(eval_tokens: int) -> TrialConfig:
    return TrialConfig.from_dict(
        {
            "model": {"name": MODEL},
            "task": {"name": TASK},
            "adapter": {"method": "lora", "r": 8},
            "training": {
                "compute_dtype": "float32",
                "device": "cpu",
                "seq_len": 256,
                "max_steps": 1,
                "eval_tokens": eval_tokens,
                "eval_batch_size": 4,
                "threads": 2,
            },
        }
    )


def perplexity(cfg: TrialConfig, layer_bits: dict[int, int], default_bits: int) -> tuple[float, float]:
    """(perplexity, weight MB) of the model quantized as given, untrained (LoRA B = 0: the base's output)."""
    from trainables.loop import evaluate, prepare

    cfg = cfg.with_overrides(
        {"quantization.default_bits": default_bits, "quantization.layer_bits": layer_bits}
    )
    p = prepare(cfg)
    evaluate(p)
    return float(p.result.perplexity), float(p.result.weight_memory_mb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval-tokens", type=int, default=16384)
    ap.add_argument("--seeds", default="0,1", help="two calibration samples")
    ap.add_argument("--extra", action="store_true", help="also uniform 4-bit and unquantized float32")
    ap.add_argument(
        "--full-second", action="store_true", help="measure the second sample fully (8 bits, gradients)"
    )
    ap.add_argument("--no-eval", action="store_true", help="only the orders and their Spearman correlation")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args()
    cfg = base_config(args.eval_tokens)
    seeds = [int(s) for s in args.seeds.split(",")]
    tables = []
    for n, seed in enumerate(seeds):
        # the second sample is for the order's stability: 4-bit KLs only (half the cost, no gradient step)
        extra = {} if n == 0 or args.full_second else {"bits": (4,), "grad_examples": 0}
        table, cached = load_or_measure(cfg, SensitivitySettings(seed=seed, by_kind=False, **extra))
        print(f"seed {seed}: {'cached' if cached else f'measured in {table.seconds:.0f} s'}")
        tables.append(table)
    out: dict = {"model": MODEL, "eval_tokens": args.eval_tokens, "order_seed0": tables[0].ranking()}
    if len(tables) == 2:
        a, b = tables
        kl4 = [[x.kl[4] for x in t.blocks] for t in tables]
        top = len(critical_layers(LAYERS))
        by_kl4 = [sorted(range(LAYERS), key=lambda i, k=k: -k[i]) for k in kl4]
        out["order_kl4"] = by_kl4
        out["spearman_kl4"] = float(spearmanr(*kl4).statistic)
        out["spearman_kl4_vs_saved_seed0"] = float(spearmanr(kl4[0], a.damage_avoided()).statistic)
        out["top6_overlap_kl4"] = len(set(by_kl4[0][:top]) & set(by_kl4[1][:top]))
        if 8 in b.bits:
            out["spearman_saved"] = float(spearmanr(a.damage_avoided(), b.damage_avoided()).statistic)
        if b.blocks[0].importance is not None:
            out["spearman_importance"] = float(
                spearmanr([x.importance for x in a.blocks], [x.importance for x in b.blocks]).statistic
            )
        print(
            "stability between the two samples:",
            {k: v for k, v in out.items() if k.startswith(("spear", "top"))},
        )
    rule = critical_layers(LAYERS)
    measured = tables[0].most_sensitive(len(rule))
    rows = {} if args.no_eval else {"rule": (rule, 4), "sensitivity": (measured, 4)}
    if args.extra and not args.no_eval:
        rows.update({"uniform 4-bit": ([], 4), "float32": ([], 32)})
    out["configs"] = {}
    for name, (eight, default) in rows.items():
        start = time.perf_counter()
        ppl, mb = perplexity(cfg, {i: 8 for i in eight}, default)
        out["configs"][name] = {"blocks_8bit": eight, "perplexity": ppl, "weight_mb": mb}
        print(
            f"{name:>14}: 8-bit blocks {eight}, perplexity {ppl:.3f}, weights {mb:.1f} MB "
            f"({time.perf_counter() - start:.0f} s)"
        )
    print(
        "(smollm2-135m's preset weights are a dequantized Q4_1 GGUF: NF4 re-quantizes already-4-bit weights)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()

"""Token perplexity from per-block NLL sums: exp(sum of NLL / number of predicted tokens)."""

import math

import datasets
import evaluate


class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="exp(mean token negative log-likelihood) over all evaluated tokens.",
            citation="",
            inputs_description="nll_sums: summed token NLL (nats) per block; token_counts: predicted tokens per block",
            features=datasets.Features(
                {"nll_sums": datasets.Value("float64"), "token_counts": datasets.Value("int64")}
            ),
        )

    def _compute(self, nll_sums, token_counts):
        total = sum(token_counts)
        if total == 0:
            return {"perplexity": float("nan"), "mean_nll": float("nan")}
        mean = sum(nll_sums) / total
        return {"perplexity": math.exp(mean) if mean < 700 else float("inf"), "mean_nll": mean}

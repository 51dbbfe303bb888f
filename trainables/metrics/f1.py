"""Macro-F1: the unweighted mean over classes of each class's F1 (2 x precision x recall / (precision + recall)).

Same definition as scikit-learn's `f1_score(average="macro")`: the classes are those in the references or the
predictions, and a class never predicted nor present scores 0 (its `zero_division` default)."""

import datasets
import evaluate


class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Unweighted mean of the per-class F1 scores.",
            citation="",
            inputs_description="predictions: list of int labels; references: list of int labels",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        classes = sorted(set(references) | set(predictions))
        if not classes:
            return {"macro_f1": float("nan")}
        scores = []
        for c in classes:
            tp = sum(1 for p, r in zip(predictions, references) if p == c and r == c)
            fp = sum(1 for p, r in zip(predictions, references) if p == c and r != c)
            fn = sum(1 for p, r in zip(predictions, references) if p != c and r == c)
            scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        return {"macro_f1": sum(scores) / len(scores)}

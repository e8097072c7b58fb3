"""A run's result does not depend on its group, on the device that trains it: the loop against groups of K.

On a GPU, cuBLAS picks other kernels for other batch shapes, so a run trained in a group of 8 or 64 is not
bit-identical to the same run trained alone; this check measures how far apart they land under bf16 and
fails past the stated tolerance. The first `alone` seeds are trained by the loop (the definition of a
run), then all seeds in groups of each K; each of the first seeds is compared with itself: its metric at
every evaluation, its final loss, and the share of eval predictions (val and test) that agree.

Tolerances (bf16 on a GPU): metric within 1.0 point (x100) at every evaluation, final loss within 0.02,
at least 98% of predictions the same. On a CPU in fp32 (the dry run) the same comparison must be exact
up to rounding: metrics and predictions equal, loss within 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.experiment.spec import RunSpec
from harness.storage.records import RunContext, RunResult


@dataclass(frozen=True)
class Tolerance:
    metric: float  # points (x100) at every evaluation
    loss: float  # final training loss
    agreement: float  # share of eval predictions that must be the same


BF16_GPU = Tolerance(metric=1.0, loss=0.02, agreement=0.98)
FP32_CPU = Tolerance(metric=0.0, loss=1e-5, agreement=1.0)


def compare(grouped: RunResult, alone: RunResult) -> dict[str, float]:
    """How far one run trained in a group lands from itself trained by the loop."""
    metric_gap = max(
        (abs(a[key] - b[key]) for a, b in zip(grouped.curve, alone.curve, strict=True)
         for key in ("val_metric", "test_metric") if not (math.isnan(a[key]) and math.isnan(b[key]))),
        default=math.nan,
    )  # fmt: skip
    same = total = 0
    for split in ("val", "test"):
        ours, theirs = (grouped.predictions or {}).get(split, []), (alone.predictions or {}).get(split, [])
        same += sum(x == y for x, y in zip(ours, theirs, strict=True))
        total += len(theirs)
    return {
        "metric_gap": metric_gap,
        "loss_gap": abs(grouped.run["loss_last"] - alone.run["loss_last"]),
        "agreement": same / total if total else math.nan,
    }


def check(
    specs: list[RunSpec], ctx: RunContext, ks: tuple[int, ...], alone: int, tol: Tolerance
) -> list[dict[str, Any]]:
    """One row per K: the worst of the first `alone` runs against the loop, and whether it is within `tol`.
    `specs`: one configuration's seeds, at least max(ks) of them."""
    from harness.training.loop import fine_tune
    from harness.training.vectorised.engine import train_group

    reference = [fine_tune(spec, ctx)[0] for spec in specs[:alone]]
    rows = []
    for k in ks:
        grouped: list[RunResult] = []
        for start in range(0, max(k, alone), k):  # the first `alone` seeds, in groups of K (one group when K >= alone)
            grouped += train_group(specs[start : start + k], ctx)
        gaps = [compare(g, r) for g, r in zip(grouped[:alone], reference, strict=True)]
        worst = {
            "metric_gap": max(g["metric_gap"] for g in gaps),
            "loss_gap": max(g["loss_gap"] for g in gaps),
            "agreement": min(g["agreement"] for g in gaps),
        }
        ok = worst["metric_gap"] <= tol.metric and worst["loss_gap"] <= tol.loss and worst["agreement"] >= tol.agreement
        rows.append({"row": f"group of {k} vs loop ({alone} runs)", "runs": alone, **worst, "within_tolerance": ok})
        if not ok:
            rows[-1]["error"] = (
                f"group of {k}: worst metric gap {worst['metric_gap']:.3g}, loss gap {worst['loss_gap']:.3g}, "
                f"agreement {worst['agreement']:.3f}; tolerance {tol}"
            )
    return rows

"""The benchmarks' one workload: n seeded few-sample SST-2 runs of one configuration, shared by the
seed-engine benchmark, its phase profile and the GPU check, so all of them time the same runs."""

from __future__ import annotations

from harness.experiment.spec import Recipe, RunSpec


def bench_specs(
    model: str, n: int, steps: int, sample_size: int, batch_size: int, engine: str = "loop", eval_size: int = 128,
    precision: str = "fp32", lr: float = 2e-5, num_evals: int = 2,
) -> list[RunSpec]:  # fmt: skip
    """n seeded few-sample SST-2 runs of one configuration (seeds 1..n)."""
    recipe = Recipe(name="bench", lr=lr, batch_size=batch_size, max_steps=steps, warmup_ratio=0.1, precision=precision)
    return [
        RunSpec(
            "sst2",
            model,
            recipe,
            s,
            s,
            sample_size=sample_size,
            eval_protocol="heldout",
            eval_size=eval_size,
            max_seq_length=64,
            num_evals=num_evals,
            engine=engine,
            experiment="bench-vectorised",
        )
        for s in range(1, n + 1)
    ]

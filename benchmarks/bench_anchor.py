"""Benchmark: the HF Trainer, a bare torch loop and `harness run` on the identical setting, per run.

Each contender runs in its own child process (so process start and imports count for all three),
on the same examples (the harness's own few-sample draw and held-out eval halves), the same model,
optimiser (AdamW, linear warm-up/decay, clip 1.0), batch size, epochs and evaluations (once per
epoch on val + test). Where a run's time goes is read from each child: imports, data, model load,
tokenisation, training, evaluations; for the harness also what `harness run` spends outside the
run (scheduler, worker start, store write). CPU by default (1 thread each); on a GPU when present.
Writes results/bench/anchor.md.  Usage: python benchmarks/bench_anchor.py [--seeds 2] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

T0 = time.perf_counter()  # a child's imports are timed from here

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's harness, not an installed one


@dataclass(frozen=True)
class Setting:
    """One fine-tuning setting shared by the three contenders."""

    task: str = "rte"
    model: str = "packaged"
    sample_size: int | None = 256  # None = the full training set
    eval_size: int | None = 128  # dev examples, halved into val/test (None = all)
    epochs: int = 2
    batch_size: int = 16
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    max_length: int = 128
    precision: str = "fp32"
    device: str = "cpu"
    threads: int = 1

    def experiment(self, name: str, seeds: list[int], runs_per_gpu: int = 1) -> dict:
        """The same setting as a harness experiment table (one eval per epoch)."""
        table = {
            "name": name,
            "task": self.task,
            "model": self.model,
            "max_seq_length": self.max_length,
            "num_evals": self.epochs,
            "seeds": seeds,
            "recipes": {
                "anchor": {
                    "lr": self.lr,
                    "batch_size": self.batch_size,
                    "epochs": float(self.epochs),
                    "warmup_ratio": self.warmup_ratio,
                    "precision": self.precision,
                }
            },
            "schedule": {"runs_per_gpu": runs_per_gpu, "threads_per_run": self.threads},
        }
        for key in ("sample_size", "eval_size"):
            if getattr(self, key) is not None:
                table[key] = getattr(self, key)
        return table


CPU_SETTING = Setting()
TINY_SETTING = Setting(sample_size=32, eval_size=32, epochs=1)
GPU_SETTING = Setting(sample_size=None, eval_size=None, epochs=3, device="cuda")  # the RTE setting


def _examples(setting: Setting, seed: int):
    """The harness's own draw: training sample for `seed`, val + test halves of dev."""
    from harness.experiment import data as D
    from harness.experiment.tasks import TASKS

    task = TASKS[setting.task]
    train = D.stratified_sample(D.load_split(task, "train"), setting.sample_size, 0, False)
    splits = D.eval_splits(task, D.load_split(task, "dev"), "heldout", 0, setting.eval_size)
    return task, train, [*splits.val, *(splits.test or ())]


def _encode(tokenizer, examples, max_length: int) -> list[dict]:
    """The harness's own tokenisation, with each example's label for the Trainer's collator."""
    from harness.experiment.data import tokenize

    features = tokenize(tokenizer, examples, max_length)
    return [{**f, "labels": int(e.label)} for f, e in zip(features, examples, strict=True)]


def child_trainer(setting: Setting, seed: int) -> dict:
    """One Hugging Face Trainer run; returns its phase timings."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from harness.training.model_source import resolve_model

    phases = {"imports": time.perf_counter() - T0}
    mark = time.perf_counter()
    task, train, dev = _examples(setting, seed)
    phases["data"], mark = time.perf_counter() - mark, time.perf_counter()
    source = resolve_model(setting.model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=task.num_labels)
    phases["model"], mark = time.perf_counter() - mark, time.perf_counter()
    train_set, dev_set = _encode(tokenizer, train, setting.max_length), _encode(tokenizer, dev, setting.max_length)
    phases["tokenize"], mark = time.perf_counter() - mark, time.perf_counter()
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="anchor-trainer-"),
        learning_rate=setting.lr,
        per_device_train_batch_size=setting.batch_size,
        per_device_eval_batch_size=64,
        num_train_epochs=setting.epochs,
        **_warmup(TrainingArguments, setting.warmup_ratio),
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        seed=seed,
        bf16=setting.precision == "bf16",
        fp16=setting.precision == "fp16",
        use_cpu=setting.device == "cpu",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda p: {"accuracy": 100.0 * float((p.predictions.argmax(-1) == p.label_ids).mean())},
    )
    trainer.train()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    phases["train+eval"] = time.perf_counter() - mark
    evals = [e["eval_accuracy"] for e in trainer.state.log_history if "eval_accuracy" in e]
    phases["accuracy"] = evals[-1] if evals else float("nan")
    phases["peak_mem_mb"] = _peak_mb(setting)
    return phases


def _warmup(args_type, ratio: float) -> dict:
    """warmup_ratio where this transformers has it, else warmup_steps as a float (a ratio when < 1)."""
    import inspect

    return {"warmup_ratio" if "warmup_ratio" in inspect.signature(args_type).parameters else "warmup_steps": ratio}


def child_bare(setting: Setting, seed: int) -> dict:
    """The same run as a plain torch loop: the floor the harness is measured against."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    from harness.training.model_source import resolve_model

    phases = {"imports": time.perf_counter() - T0}
    mark = time.perf_counter()
    device = torch.device(setting.device)
    task, train, dev = _examples(setting, seed)
    phases["data"], mark = time.perf_counter() - mark, time.perf_counter()
    torch.manual_seed(seed)
    source = resolve_model(setting.model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=task.num_labels).to(device)
    phases["model"], mark = time.perf_counter() - mark, time.perf_counter()

    def batches(rows: list[dict], size: int) -> list[dict]:
        out = []
        for i in range(0, len(rows), size):
            chunk = rows[i : i + size]
            padded = tokenizer.pad([{k: v for k, v in r.items() if k != "labels"} for r in chunk], return_tensors="pt")
            padded["labels"] = torch.tensor([r["labels"] for r in chunk])
            out.append({k: v.to(device) for k, v in padded.items()})
        return out

    train_rows, dev_rows = _encode(tokenizer, train, setting.max_length), _encode(tokenizer, dev, setting.max_length)
    dev_batches = batches(dev_rows, 64)
    phases["tokenize"], mark = time.perf_counter() - mark, time.perf_counter()
    steps_per_epoch = -(-len(train_rows) // setting.batch_size)
    total = steps_per_epoch * setting.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=setting.lr, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, int(setting.warmup_ratio * total), total)
    generator = torch.Generator().manual_seed(seed)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setting.precision)
    train_s = eval_s = 0.0
    for _ in range(setting.epochs):
        order = torch.randperm(len(train_rows), generator=generator).tolist()
        model.train()
        for batch in batches([train_rows[i] for i in order], setting.batch_size):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
        _sync(device)
        train_s, mark = train_s + time.perf_counter() - mark, time.perf_counter()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(**b).logits.argmax(-1) == b["labels"]).sum()) for b in dev_batches)
        eval_s, mark = eval_s + time.perf_counter() - mark, time.perf_counter()
    phases.update(train=train_s, eval=eval_s, accuracy=100 * correct / len(dev_rows), peak_mem_mb=_peak_mb(setting))
    return phases


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(setting: Setting) -> float:
    import resource

    import torch

    if setting.device != "cpu" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(kind: str, setting: Setting, seed: int, env: dict[str, str]) -> dict:
    """One anchor run in a fresh interpreter; its wall time includes process start and imports."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--seed", str(seed)]
    cmd += ["--setting", json.dumps(asdict(setting))]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{kind} run failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    phases = json.loads(out.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, **phases}


def run_harness(setting: Setting, seeds: list[int], env: dict[str, str], runs_per_gpu: int = 1) -> dict:
    """`harness run` of the setting as an experiment file, in a child process; per-run phases from the store."""
    import pandas as pd

    from harness.storage.store import load_runs

    with tempfile.TemporaryDirectory(prefix="anchor-harness-") as tmp:
        path = Path(tmp) / "anchor.toml"
        path.write_text(_toml(setting.experiment("anchor", seeds, runs_per_gpu)))
        cmd = [sys.executable, "-m", "harness.cli", "--results", str(Path(tmp) / "results"), "run", str(path)]
        if setting.device == "cpu":
            cmd += ["--workers", "1"]  # one run at a time, like the Trainer and the bare loop
        start = time.perf_counter()
        out = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, env=env, cwd=ROOT, check=False)
        wall = time.perf_counter() - start
        if out.returncode != 0:
            raise RuntimeError(f"harness run failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
        runs = load_runs(Path(tmp) / "results" / "anchor")
    bad = runs[runs["status"] != "done"]
    if len(bad) or len(runs) != len(seeds):
        problems = bad[["status", "error"]].to_dict("records")
        raise RuntimeError(f"harness: {len(runs)} of {len(seeds)} run(s) stored; not done: {problems}")
    phases = pd.DataFrame([json.loads(p) for p in runs["phases"]]).mean().to_dict()
    in_run = float(runs["wall_time_s"].mean())
    return {
        "wall_s": wall / len(seeds),
        "in_run_s": in_run,
        "outside_run_s": wall / len(seeds) - in_run,
        "peak_mem_mb": float(runs["peak_mem_mb"].max()),
        "score": float(runs["score"].mean()),
        **phases,
    }


def _toml(table: dict, prefix: str = "") -> str:
    """A tiny TOML writer for the experiment tables built here (scalars, lists, nested tables)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            name = f"{prefix}.{key}" if prefix else key
            lines += ["", f"[{name}]", _toml(value, name)]
    return "\n".join(lines)


def child_env(setting: Setting) -> dict[str, str]:
    threads = str(setting.threads)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TOKENIZERS_PARALLELISM="false")
    if setting.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def measure(setting: Setting, seeds: list[int]) -> list[dict]:
    """Trainer, bare loop and harness on `setting`, one row each (means over seeds)."""
    env = child_env(setting)
    rows = []
    for kind in ("trainer", "bare"):
        runs = [run_child(kind, setting, s, env) for s in seeds]
        rows.append({"how": kind, **{k: sum(r.get(k, 0.0) for r in runs) / len(runs) for k in runs[0]}})
    rows.append({"how": "harness run", **run_harness(setting, seeds, env)})
    return rows


def table(rows: list[dict]) -> list[str]:
    trainer = next(r["wall_s"] for r in rows if r["how"] == "trainer")
    bare = next(r["wall_s"] for r in rows if r["how"] == "bare")
    cols = ["imports", "data", "model", "tokenize", "train", "eval", "train+eval", "outside_run_s"]
    head = "| how | s / run | vs Trainer | vs bare loop | " + " | ".join(cols) + " | peak MB |"
    lines = [head, "|---" * (len(cols) + 5) + "|"]
    for r in rows:
        cells = " | ".join(f"{r[c]:.2f}" if c in r else "-" for c in cols)
        lines.append(
            f"| {r['how']} | {r['wall_s']:.2f} | {r['wall_s'] / trainer:.2f} | {r['wall_s'] / bare:.2f} | "
            f"{cells} | {r.get('peak_mem_mb', float('nan')):.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="the issue's full-RTE setting (GPU scale)")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke setting (checks the script)")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "anchor.md"))
    parser.add_argument("--child", choices=["trainer", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        setting = Setting(**json.loads(args.setting))
        if setting.device == "cpu":
            import torch

            torch.set_num_threads(setting.threads)
        fn = child_trainer if args.child == "trainer" else child_bare
        print(json.dumps(fn(setting, args.seed)))
        return
    import torch

    setting = GPU_SETTING if args.full else TINY_SETTING if args.tiny else CPU_SETTING
    if torch.cuda.is_available() and not args.full:
        setting = replace(setting, device="cuda")
    seeds = list(range(1, args.seeds + 1))
    rows = measure(setting, seeds)
    device = torch.cuda.get_device_name(0) if setting.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    lines = [
        "# Anchor benchmark: HF Trainer vs bare torch loop vs `harness run`",
        "",
        f"Machine: {platform.machine()}, {device}; torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Setting: {json.dumps(asdict(setting))}; {len(seeds)} seed(s), means per run.",
        "Seconds per run include process start and imports (harness: `harness run` wall / runs); phase columns",
        "are measured inside the run; outside_run_s = harness wall per run minus its in-run time.",
        "",
        *table(rows),
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    (out.with_suffix(".json")).write_text(json.dumps(rows, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

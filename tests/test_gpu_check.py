"""benchmarks/gpu_check.py: refuses a machine without a GPU at once; a failing section fails the exit code
but not the table; the bundle is upcast to fp32. (The real sections run in `make gpu-check DRY=1`.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    from safetensors.torch import save_file

    model = tmp_path / "bundle" / "model"
    model.mkdir(parents=True)
    save_file({"w": torch.ones(2, 2, dtype=torch.float16), "ids": torch.arange(3)}, str(model / "model.safetensors"))
    (model / "config.json").write_text("{}")
    (tmp_path / "bundle" / "glue").mkdir()
    return tmp_path / "bundle"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_without_a_gpu_it_fails_at_once_with_a_clear_message(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert "no NVIDIA GPU visible" in out.stderr and "--dry-run" in out.stderr
    assert not (tmp_path / "out").exists()


def test_upcast_gives_fp32_weights_and_keeps_other_files(bundle: Path, tmp_path: Path):
    from safetensors.torch import load_file

    dest = gpu_check.upcast_bundle(bundle, tmp_path / "fp32")
    tensors = load_file(str(dest / "model.safetensors"))
    assert tensors["w"].dtype == torch.float32 and tensors["ids"].dtype == torch.int64
    assert (dest / "config.json").is_file()


def test_a_failing_section_still_prints_the_others_and_exits_1(bundle: Path, tmp_path: Path, monkeypatch, capsys):
    def good(check):
        row = {"row": "good", "runs": 2, "s_per_run": 1.5, "runs_per_hour": 2400.0, "in_run_s": 1.0}
        return [{**row, "peak_mem_mb": 10.0, "score": 50.0, "phases": {"train": 1.0}}]

    def bad(check):
        raise RuntimeError("boom")

    sections = [gpu_check.Section("bad", bad), gpu_check.Section("good", good)]
    monkeypatch.setattr(gpu_check, "SECTIONS", sections)
    out = tmp_path / "out"
    assert gpu_check.main(["--dry-run", "--bundle", str(bundle), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "| bad | FAILED |" in printed and "| good | 2 | 1.50 | 2400 |" in printed
    rows = json.loads((out / "gpu_check.json").read_text())
    assert [r["row"] for r in rows] == ["bad", "good"] and "boom" in rows[0]["error"]
    assert (out / "gpu_check.md").is_file() and (out / "gpu_check.csv").read_text().count("\n") == 3
    monkeypatch.setattr(gpu_check, "SECTIONS", sections[1:])
    monkeypatch.setenv("HARNESS_DATA_DIR", "/the/callers/data")
    assert gpu_check.main(["--dry-run", "--bundle", str(bundle), "--out", str(out)]) == 0
    assert os.environ["HARNESS_DATA_DIR"] == "/the/callers/data"  # main() restores the caller's environment


def test_an_experiment_past_its_budget_is_stopped_with_its_workers_and_keeps_its_output(tmp_path: Path):
    """The reproduce section must end before the machine's time does: the driver and every worker it
    started are killed at the budget, and what the driver printed before survives for the log."""
    marker = tmp_path / "child-alive"
    script = f"echo started; (sleep 2; touch {marker}) & sleep 30; echo never"
    code, out, _ = gpu_check._run_until(["bash", "-c", script], {"PATH": "/usr/bin:/bin"}, timeout_s=1.0)
    assert code is None and "started" in out and "never" not in out
    time.sleep(2.5)  # the background child would have touched the marker by now had it survived
    assert not marker.exists()


def test_an_experiment_within_its_budget_returns_its_exit_code(tmp_path: Path):
    code, out, err = gpu_check._run_until(
        ["bash", "-c", "echo hi; echo oops >&2; exit 3"], {"PATH": "/usr/bin:/bin"}, 10
    )
    assert (code, out.strip(), err.strip()) == (3, "hi", "oops")


def test_seed_group_sections_run_the_fair_table_and_the_independence_check_at_the_right_size(
    tmp_path: Path, monkeypatch
):
    """`make gpu-check` has both seed-group sections; a dry run shrinks them to CPU sizes, a GPU run does not."""
    import group_independence
    import vectorised_fair

    assert {"group-independence", "vectorised"} <= {s.name for s in gpu_check.SECTIONS}
    seen: dict[str, object] = {}

    def run_fair(protocol):
        seen["fair"] = protocol
        return []

    def check_groups(specs, ctx, ks, alone, tol):
        seen["gi"] = (len(specs), ks, tol)
        return []

    monkeypatch.setattr(vectorised_fair, "run_fair", run_fair)
    monkeypatch.setattr(vectorised_fair, "write_table", lambda rows, protocol, out: "")
    monkeypatch.setattr(group_independence, "check", check_groups)
    for dry in (True, False):
        check = gpu_check.Check(
            gpu_check.anchor.TINY_SETTING, [1], [1], 1, {"HARNESS_DATA_DIR": str(tmp_path)}, tmp_path, dry
        )
        gpu_check.section_vectorised(check)
        gpu_check.section_group_independence(check)
        protocol = seen.pop("fair")
        runs, ks, tol = seen.pop("gi")
        if dry:
            assert (protocol.runs, protocol.device, ks, tol) == (2, "cpu", (2, 4), group_independence.FP32_CPU)
        else:
            assert (protocol.runs, protocol.reps, protocol.device) == (64, 3, "cuda")
            assert len(protocol.rows) == 10 and {r.precision for r in protocol.rows} == {"tf32", "bf16"}
            assert (runs, ks, tol) == (64, (8, 64), group_independence.BF16_GPU)

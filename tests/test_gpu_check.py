"""benchmarks/gpu_check.py: refuses a machine without a GPU at once; a failing section fails the exit code
but not the table; the bundle is upcast to fp32. (The real sections run in `make gpu-check DRY=1`.)"""

from __future__ import annotations

import json
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
    assert gpu_check.main(["--dry-run", "--bundle", str(bundle), "--out", str(out)]) == 0


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

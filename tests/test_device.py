"""harness/training/device.py: the CUDA call order in a fresh worker, precision checks, autocast, scaler, determinism.

A fake torch.cuda enforces what the real one does in a fresh process: any memory-stats call before
CUDA is initialised fails with "Invalid device argument" (the bug that failed every GPU run).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from harness.storage.records import RunContext
from harness.training import device as hw
from harness.training import loop as train


class FakeCuda:
    """torch.cuda as a fresh process sees it: nothing works before init()."""

    def __init__(self, bf16: bool = True) -> None:
        self.initialised = False
        self.calls: list[str] = []
        self.bf16 = bf16

    def _need_init(self, name: str) -> None:
        self.calls.append(name)
        if not self.initialised:
            raise RuntimeError("Invalid device argument")

    def is_available(self) -> bool:
        return True

    def init(self) -> None:
        self.calls.append("init")
        self.initialised = True

    def set_device(self, device) -> None:
        self.calls.append("set_device")

    def reset_peak_memory_stats(self, device) -> None:
        self._need_init("reset_peak_memory_stats")

    def max_memory_allocated(self, device) -> int:
        self._need_init("max_memory_allocated")
        return 3 * 2**20

    def synchronize(self, device) -> None:
        self._need_init("synchronize")

    def get_device_name(self, device) -> str:
        return "Fake GPU"

    def is_bf16_supported(self) -> bool:
        return self.bf16


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = FakeCuda()
    monkeypatch.setattr(hw, "cuda", fake)
    return fake


def test_fake_reproduces_the_fresh_worker_failure(fake_cuda):
    """The old train.py order (reset before init) fails exactly as every GPU run did."""
    with pytest.raises(RuntimeError, match="Invalid device argument"):
        fake_cuda.reset_peak_memory_stats(torch.device("cuda:0"))


def test_prepare_initialises_before_resetting_peak_memory(fake_cuda):
    gpu = torch.device("cuda:0")
    hw.prepare(gpu)
    assert fake_cuda.calls == ["init", "set_device", "reset_peak_memory_stats"]
    assert hw.peak_memory_mb(gpu) == 3.0
    hw.synchronize(gpu)
    assert hw.device_name(gpu) == "Fake GPU"


def test_cpu_never_touches_cuda(fake_cuda):
    cpu = torch.device("cpu")
    hw.prepare(cpu)
    hw.synchronize(cpu)
    assert hw.peak_memory_mb(cpu) > 0  # the process's peak resident set
    assert fake_cuda.calls == []


def _reaches_data_with_cuda_initialised(fake_cuda, monkeypatch, module, train) -> None:
    """Run `train` on 'cuda:0' with the fake until it loads data: CUDA must be initialised by then, and the
    peak-memory counter reset only after that."""

    class Reached(Exception):
        pass

    def stop(*args, **kwargs):
        assert fake_cuda.initialised
        raise Reached

    monkeypatch.setattr(module.D, "load_split", stop)
    with pytest.raises(Reached):
        train(RunContext(device="cuda:0"))
    assert fake_cuda.calls[:3] == ["init", "set_device", "reset_peak_memory_stats"]


def test_fine_tune_calls_prepare_before_any_memory_call(fake_cuda, monkeypatch):
    """train.fine_tune on 'cuda:0' with the fake: it must reach data loading with CUDA initialised."""
    _reaches_data_with_cuda_initialised(fake_cuda, monkeypatch, train, lambda ctx: train.fine_tune(_spec(), ctx))


def test_resolve_refuses_a_missing_gpu(monkeypatch):
    class NoCuda(FakeCuda):
        def is_available(self) -> bool:
            return False

    monkeypatch.setattr(hw, "cuda", NoCuda())
    with pytest.raises(hw.DeviceError, match="no CUDA GPU"):
        hw.resolve("cuda:0")
    assert hw.resolve("cpu").type == "cpu"


def test_fp16_refused_on_cpu_naming_the_field():
    with pytest.raises(hw.DeviceError, match="'precision' = 'fp16' needs a CUDA GPU"):
        hw.check_precision(torch.device("cpu"), "fp16", "recipe 'x'")
    hw.check_precision(torch.device("cpu"), "bf16")  # torch autocasts bf16 on CPU
    hw.check_precision(torch.device("cpu"), "fp32")


def test_tf32_is_a_gpu_precision_set_by_every_run_and_read_back_for_its_record():
    """A worker that trained a TF32 run goes back to strict fp32 for the next fp32 run; the record says which."""
    with pytest.raises(hw.DeviceError, match="'precision' = 'tf32' needs a CUDA GPU"):
        hw.check_precision(torch.device("cpu"), "tf32", "recipe 'x'")
    gpu = torch.device("cuda:0")
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        hw.set_matmul_precision(gpu, "tf32")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert hw.precision_in_effect(gpu, "tf32") == "fp32 matmuls in tf32"
        hw.set_matmul_precision(gpu, "bf16")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert hw.precision_in_effect(gpu, "bf16") == "bf16 autocast, fp32 matmuls in ieee fp32"
        hw.set_matmul_precision(gpu, "tf32")
        hw.set_matmul_precision(gpu, "fp32")
        assert hw.precision_in_effect(gpu, "fp32") == "fp32 matmuls in ieee fp32"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert hw.precision_in_effect(torch.device("cpu"), "fp32") == "fp32 matmuls in ieee fp32"


def test_bf16_refused_on_a_gpu_without_it(monkeypatch):
    monkeypatch.setattr(hw, "cuda", FakeCuda(bf16=False))
    with pytest.raises(hw.DeviceError, match="'precision' = 'bf16' but Fake GPU has no bf16"):
        hw.check_precision(torch.device("cuda:0"), "bf16")
    hw.check_precision(torch.device("cuda:0"), "fp16")


def test_autocast_bf16_on_cpu_changes_the_matmul_dtype():
    a = torch.randn(4, 4)
    with hw.autocast(torch.device("cpu"), "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with hw.autocast(torch.device("cpu"), "fp32"):
        assert (a @ a).dtype == torch.float32


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_grad_scaler_only_for_fp16():
    assert hw.grad_scaler(torch.device("cpu"), "fp32") is None
    assert hw.grad_scaler(torch.device("cpu"), "bf16") is None
    assert isinstance(hw.grad_scaler(torch.device("cuda"), "fp16"), torch.amp.GradScaler)


def test_set_deterministic_sets_cublas_workspace_and_torch_flag(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    try:
        hw.set_deterministic(False)
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        hw.set_deterministic(True)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before)


def _spec():
    from harness.experiment.config import Recipe, RunSpec

    return RunSpec("rte", "packaged", Recipe(), 1, 1, sample_size=8)


def test_vectorised_group_calls_prepare_before_any_memory_call(fake_cuda, monkeypatch):
    """The seed-group engine on 'cuda:0' must initialise CUDA before it touches the memory counters
    (it reset them first and every group failed on a real GPU with "Invalid device argument")."""
    from harness.training.vectorised import engine

    _reaches_data_with_cuda_initialised(fake_cuda, monkeypatch, engine, lambda ctx: engine.train_group([_spec()], ctx))


def test_no_cuda_call_outside_the_device_module():
    """Every CUDA-only call lives in harness/training/device.py, where the contract above is tested."""
    root = Path(__file__).resolve().parents[1] / "harness"
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for path in root.rglob("*.py")
        if path.name != "device.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "torch.cuda." in line
        and not line.lstrip().startswith("#")
        and "_is_in_bad_fork" not in line  # a flag of the forked process, never a call on the device
    ]
    assert not offenders, f"CUDA calls outside harness/training/device.py: {offenders}"

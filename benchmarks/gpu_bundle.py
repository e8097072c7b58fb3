"""Write .gpu-bundle/: what `make gpu-check` needs on a machine without pip or network.

An fp16 copy of the packaged MiniLM (~45 MB instead of 90; the check upcasts it back to fp32),
its config and tokenizer files, and the GLUE task folders the check trains on.
Usage: python benchmarks/gpu_bundle.py [--out .gpu-bundle] [--tasks rte] [--model DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def write_model(source: Path, dest: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(source / "model.safetensors"))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    assert all(v.dtype != torch.float32 for v in half.values())
    save_file(half, str(dest / "model.safetensors"), metadata={"format": "pt", "harness_bundle": "fp16"})
    for name in MODEL_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)


def write_data(data_dir: Path, tasks: list[str], dest: Path) -> list[str]:
    from harness.experiment.tasks import TASKS

    folders = []
    for name in tasks:
        folder = TASKS[name].folder
        if not (data_dir / folder).is_dir():
            raise SystemExit(f"gpu-bundle: {data_dir / folder} is missing; set HARNESS_DATA_DIR to the GLUE folder")
        shutil.copytree(data_dir / folder, dest / folder, dirs_exist_ok=True)
        folders.append(folder)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / ".gpu-bundle"))
    parser.add_argument("--tasks", default="rte", help="comma-separated task names (default: rte)")
    parser.add_argument("--model", help="model folder (default: the packaged MiniLM)")
    args = parser.parse_args()
    from harness.training.model_source import packaged_model_dir

    source = Path(args.model) if args.model else packaged_model_dir()
    if source is None or not (source / "model.safetensors").is_file():
        raise SystemExit("gpu-bundle: the packaged MiniLM is not installed (make install), or give --model DIR")
    data_env = os.environ.get("HARNESS_DATA_DIR")
    if not data_env:
        raise SystemExit("gpu-bundle: set HARNESS_DATA_DIR to the GLUE folder (the check cannot download)")
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    write_model(source, out / "model")
    folders = write_data(Path(data_env), args.tasks.split(","), out / "glue")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    manifest = {
        "model_source": str(source),
        "tasks": folders,
        "sha256": {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    size = sum(p.stat().st_size for p in files) / 2**20
    print(f"gpu-bundle: {out} ({size:.1f} MiB): fp16 model from {source}, GLUE {', '.join(folders)}")


if __name__ == "__main__":
    main()

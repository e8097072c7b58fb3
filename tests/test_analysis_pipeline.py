import subprocess
import sys

import pandas as pd

from harness.analysis import analyze_experiment
from harness.analysis.synthetic import synthetic_runs, write_synthetic_store


def test_analyze_experiment_writes_every_table(tmp_path):
    write_synthetic_store(tmp_path, *synthetic_runs(n_init=3, n_order=3, n_evals=4, seed=2))
    tables = analyze_experiment(tmp_path, n_boot=100, n_perm=99)
    for name in ("summary", "comparisons", "expected_max", "variance_decomposition", "early_stopping"):
        assert (tmp_path / "analysis" / f"{name}.parquet").exists(), name
        assert len(pd.read_parquet(tmp_path / "analysis" / f"{name}.parquet")) == len(tables[name]) > 0
    assert not list((tmp_path / "analysis").glob(".*tmp"))


def test_analysis_does_not_import_torch():
    code = "import sys, harness.analysis; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

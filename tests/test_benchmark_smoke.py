"""The speed benchmark runs end to end on CPU with tiny sizes (a smoke test: no timing is asserted)."""
import importlib.util
from pathlib import Path


def test_benchmark_runs_on_cpu_tiny():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "run_benchmarks.py"
    spec = importlib.util.spec_from_file_location("run_benchmarks", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--n", "32", "--size", "16", "--spec", "16", "12", "--batch", "16", "--epochs", "2",
                    "--methods", "dus-h[q8],diagnose-relearn[monitor]", "--naive-clips", "0"])
    assert res["floor_s"] > 0 and res["joint_s"] > 0 and res["joint_again_s"] > 0
    assert set(res["methods"]) == {"dus-h[q8]", "diagnose-relearn[monitor]"}
    assert res["methods"]["diagnose-relearn[monitor]"]["diagnosis_s"] > 0
    assert all(e["train"] > 0 for e in res["methods"]["dus-h[q8]"]["epochs"])


def test_benchmark_runs_through_the_real_cremad_layout_on_cpu():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "run_benchmarks.py"
    spec = importlib.util.spec_from_file_location("run_benchmarks", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--layout", "cremad", "--n", "20", "--size", "16", "--batch", "8", "--epochs", "2",
                    "--methods", "", "--naive-clips", "0"])
    assert res["floor_s"] > 0 and res["joint_s"] > 0

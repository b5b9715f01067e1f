"""`mmbalance --help` and `import mmbalance` stay light: torch and the methods are imported only when a command
needs them (issue 21: the help took 3.5 CPU-s)."""
import subprocess
import sys


def _modules_after(code: str) -> set:
    probe = code + "\nimport sys\nprint('@@MODULES@@', ' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split("@@MODULES@@", 1)[1].split())


def test_help_imports_neither_torch_nor_methods():
    mods = _modules_after("from mmbalance.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert "torch" not in mods and "mmbalance.methods" not in mods and "mmbalance.report.compare" not in mods


def test_subcommand_help_imports_only_that_command():
    mods = _modules_after("from mmbalance.cli import main\ntry:\n    main(['compare', '--help'])\n"
                          "except SystemExit:\n    pass")
    assert "mmbalance.report.compare" in mods
    assert "mmbalance.report.sweep" not in mods and "torch" not in mods


def test_package_names_load_on_first_use_and_registries_import_their_builtins():
    assert "torch" not in _modules_after("import mmbalance")
    # the registry module alone (no methods imported yet) still knows every built-in method, dataset, fusion;
    # the package's names then load what they need (one subprocess: each start-up imports torch)
    mods = _modules_after("from mmbalance.registry import METHODS, DATASETS, FUSIONS\n"
                          "assert 'dus-h' in METHODS.names() and DATASETS.get('synthetic') and 'concat' in FUSIONS\n"
                          "from mmbalance import ENCODERS\nassert 'mlp' in ENCODERS and 'temporal' in ENCODERS")
    assert "mmbalance.methods.ogm_ge" in mods


def test_a_failing_command_is_still_one_line(tmp_path, capsys):
    from mmbalance.cli import main

    assert main(["train", "--dataset", "no-such-dataset", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown dataset 'no-such-dataset'" in err[0]

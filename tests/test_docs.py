"""The documentation runs: every shell and Python snippet of README.md and docs/ (rules and tiny settings:
``tests/docs_snippets.py``). A snippet that cannot run here carries a skip marker with its reason; the test
counts them, so a skip cannot hide.

The snippet runs are marked ``e2e`` (~1.5 min on 2 idle cores): ``make test`` runs them as its second step
(``pytest -m e2e``); a plain ``pytest`` runs only the inventory check below."""
import re

import pytest

from docs_snippets import REPO, SHOWN, Runner, doc_files, inventory, snippets

FILES = [f for f in doc_files() if any(s.runnable for s in snippets(f))]
#: what a snippet may be skipped for: data that must be on disk, a GPU, a network install, `make` itself, or
#: hours of full-size runs (whose pipeline a test runs on a tiny spec)
SKIP_REASONS = re.compile(r"paper dataset|GPU|installs|make |CREMA-D|several machines|hours|"
                          r"^an outline; (examples/\S+) is the complete version")


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = Runner(tmp_path_factory.mktemp("docs"))
    yield r
    r.close()


def _run_file(runner, path, with_slow):
    cwd = runner.workdir(str(path.relative_to(REPO)) + ("-slow" if with_slow else ""))
    ran = 0
    for snip in snippets(path):
        if not snip.runnable or snip.mark == "skip" or (snip.mark == "slow" and not with_slow):
            continue
        res = runner.run(snip, cwd)
        assert res.returncode == 0, (f"{snip} failed (exit {res.returncode}):\n{snip.code}\n--- output ---\n"
                                     f"{res.stdout[-6000:]}")
        ran += 1
    return ran


@pytest.mark.e2e
@pytest.mark.parametrize("path", FILES, ids=[str(f.relative_to(REPO)) for f in FILES])
def test_snippets_run(runner, path):
    ran = _run_file(runner, path, with_slow=False)
    assert ran or all(s.mark for s in snippets(path) if s.runnable)


@pytest.mark.slow
@pytest.mark.parametrize("path", [f for f in FILES if any(s.mark == "slow" for s in snippets(f))],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_slow_snippets_run(runner, path):
    _run_file(runner, path, with_slow=True)


def test_every_fence_is_tagged_and_every_skip_says_why():
    counts = inventory()
    for f in doc_files():
        for s in snippets(f):
            assert s.lang, f"{s}: untagged code fence (tag it bash, python, or text/json/yaml if it is not run)"
            assert s.runnable or s.lang in SHOWN, f"{s}: unknown fence language {s.lang!r}"
            if s.mark == "skip":
                kind = SKIP_REASONS.search(s.reason)
                assert kind, f"{s}: skip reason {s.reason!r} is not one of the allowed kinds"
                if kind.group(1):  # an outline names the complete example, which must exist (its test runs it)
                    assert (REPO / kind.group(1)).is_file(), f"{s}: {kind.group(1)} does not exist"
    assert counts["run"] >= 24 and counts["skip"] <= 20, counts  # a new skip must be counted in here, on purpose
    print(f"\ndocs snippets: {counts}")

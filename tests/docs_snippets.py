"""Run the documentation's snippets (used by ``tests/test_docs.py``; ``python tests/docs_snippets.py`` lists them).

What counts as a snippet: every fenced block of README.md and docs/**/*.md tagged ``bash``/``sh``/``shell``
(run by ``bash -e -o pipefail``) or ``python`` (run by ``python -``). Other tags (``text``, ``json``, ``yaml``)
are shown, not run; an untagged fence is an error, so nothing escapes by omission.

Markers, on the line right above a fence (an HTML comment, invisible when rendered):

* ``<!-- docs-test: skip: REASON -->`` — cannot run here (a paper dataset on disk, a GPU, a network install,
  or ``make`` itself), or ``skip: an outline; examples/X.py is the complete version (...)`` for a sketch whose
  complete, tested version is that example; counted and reported, never run;
* ``<!-- docs-test: slow: REASON -->`` — runs only with ``pytest -m slow`` (timing benchmarks).

Snippets of one file run in order in one fresh working directory (so a ``report`` can read what a ``compare``
above it wrote), which links the repository's top-level folders (``scripts/``, ``benchmarks/``, ...).

Tiny settings (the documented rewrite rule, :func:`tiny_argv`): every ``mmbalance train|compare|sweep`` runs
1 epoch (``train.epochs=1`` appended, so it wins over flags and configs) without the final linear probe
(``eval.probe=false``), ``--seeds`` keeps its first seed, ``--batch-sizes``/``--lrs`` their first value, and
``--threads 1 --no-progress log.tensorboard=false`` are added; ``eval`` gets ``--threads 1``. In Python
snippets ``train.epochs=N`` becomes ``train.epochs=1``. Everything else — every method, dataset, option,
report and script a snippet names — runs as written.

Speed: ``mmbalance`` and ``python`` on the snippets' PATH are tiny clients of one server process that has
imported mmbalance, torch and matplotlib once; each command runs in a fresh ``fork`` of it (its own process,
with the client's arguments, working directory, environment and stdin/stdout/stderr), which is what
``mmbalance`` would run, minus ~3 s of imports per command.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
TINY_EPOCHS = 1
SHELL = {"bash", "sh", "shell"}
PYTHON = {"python", "py"}
SHOWN = {"text", "json", "yaml", "toml", "markdown", "md", "diff", "console-output"}
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(skip|slow):\s*(.+?)\s*-->\s*$")


@dataclass
class Snippet:
    file: str  # relative to the repository
    line: int  # line of the opening fence
    lang: str
    code: str
    mark: Optional[str] = None  # None | "skip" | "slow"
    reason: str = ""

    @property
    def runnable(self) -> bool:
        return self.lang in SHELL or self.lang in PYTHON

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def doc_files() -> List[Path]:
    return [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))


def snippets(path: Path) -> List[Snippet]:
    """Every fenced block of a markdown file, with its marker."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        line = text[: m.start()].count("\n") + 1
        before = [line for line in text[: m.start()].splitlines() if line.strip()][-1:]
        mk = _MARKER.match(before[0]) if before else None
        out.append(Snippet(str(path.relative_to(REPO)), line, m.group(1).strip().lower(), m.group(2),
                           mk.group(1) if mk else None, mk.group(2) if mk else ""))
    return out


# ---------------------------------------------------------------------------- the tiny rewrite rule
def _first(value: str) -> str:
    first = value.split(",")[0].strip()
    return first.split("-")[0] if re.fullmatch(r"\d+\s*-\s*\d+", first) else first


def tiny_argv(argv: List[str]) -> List[str]:
    """The documented rewrite of a ``mmbalance`` command line (module docstring)."""
    lead = 0  # global options before the command (--import FILE)
    while lead < len(argv) and argv[lead].startswith("--import"):
        lead += 1 if "=" in argv[lead] else 2
    if lead:
        return list(argv[:lead]) + tiny_argv(list(argv[lead:]))
    if not argv or argv[0] not in ("train", "compare", "sweep", "eval"):
        return list(argv)
    caps = {"--epochs": lambda v: str(min(int(v), TINY_EPOCHS)), "--seeds": _first, "--batch-sizes": _first,
            "--lrs": _first}
    out: List[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        name, eq, val = a.partition("=")
        if name in caps and eq:
            out.append(f"{name}={caps[name](val)}")
        elif a in caps and i + 1 < len(argv):
            out += [a, caps[a](argv[i + 1])]
            i += 1
        else:
            out.append(a)
        i += 1
    out += ["--threads", "1"]
    if argv[0] != "eval":
        out += ["--no-progress", "log.tensorboard=false", "eval.probe=false", f"train.epochs={TINY_EPOCHS}"]
    return out


def tiny_python(code: str) -> str:
    return re.sub(r"train\.epochs=\d+", f"train.epochs={TINY_EPOCHS}", code)


# ---------------------------------------------------------------------------- fork server
_CLIENT = """#!{python} -S
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({sock!r})
msg = json.dumps({{"kind": {kind!r}, "argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
socket.send_fds(s, [len(msg).to_bytes(8, "big") + msg], [0, 1, 2])
rc = s.recv(32)
sys.exit(int(rc) if rc else 1)
"""


def _recv_request(conn: socket.socket):
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
    need = int.from_bytes(data[:8], "big")
    body = data[8:]
    while len(body) < need:
        chunk = conn.recv(need - len(body))
        if not chunk:
            raise ConnectionError("client went away")
        body += chunk
    return json.loads(body), fds


def _run_request(req: Dict, fds: List[int]) -> int:
    """In the forked child: become the requested command."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    argv = list(req["argv"])
    try:
        if req["kind"] == "mmbalance":
            from mmbalance.cli import main

            argv = tiny_argv(argv)
            sys.argv = ["mmbalance", *argv]
            return int(main(argv) or 0)
        return _python(argv)
    except SystemExit as e:  # sys.exit(...) in the command: the interpreter's exit-code rules
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 — a snippet's failure, reported like the interpreter would
        import traceback

        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _python(argv: List[str]) -> int:
    """``python ARGS`` semantics for ``-c CODE``, ``-`` (stdin), ``-m MODULE`` and ``SCRIPT``."""
    import runpy

    while argv and argv[0] in ("-u", "-B", "-E", "-s"):
        argv = argv[1:]
    if not argv or argv[0] == "-":
        sys.argv = ["-", *argv[1:]]
        code = tiny_python(sys.stdin.read())
        exec(compile(code, "<stdin>", "exec"), {"__name__": "__main__"})  # noqa: S102 — the docs' own code
    elif argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        exec(compile(tiny_python(argv[1]), "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
    elif argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, str(Path(argv[0]).resolve().parent))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


def serve(sock_path: str) -> None:
    """The server loop (run as ``python tests/docs_snippets.py --serve SOCKET``)."""
    import matplotlib

    matplotlib.use("Agg")
    import mmbalance  # noqa: F401  (the expensive imports, once)
    import mmbalance.cli  # noqa: F401
    import mmbalance.report.html  # noqa: F401
    import torch

    torch.set_num_threads(1)
    _warm_up()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        try:
            req, fds = _recv_request(conn)
        except (OSError, ValueError, ConnectionError):
            conn.close()
            continue
        pid = os.fork()
        if pid == 0:  # the command
            srv.close()
            conn.close()
            os._exit(_run_request(req, fds))
        for fd in fds:
            os.close(fd)

        def reap(pid=pid, conn=conn):
            _, status = os.waitpid(pid, 0)
            try:
                conn.sendall(str(os.waitstatus_to_exitcode(status)).encode())
            finally:
                conn.close()

        threading.Thread(target=reap, daemon=True).start()


def _warm_up() -> None:
    """Train, evaluate and report one tiny run here, once, so that the modules the CLI imports lazily (scikit-learn,
    scipy.optimize, the plot modules, matplotlib's fonts) are loaded before forking: otherwise every command
    would load them again (~1.5 s each)."""
    import contextlib
    import io

    from mmbalance.cli import main
    from mmbalance.report import plot_modules

    plot_modules()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        run = str(Path(tmp) / "run")
        main(["train", "--dataset", "synthetic", "--method", "diagnose-relearn", "--out", run,
              *tiny_argv(["train"])[1:],
              "data.options.n=120", "method_args.diagnose-relearn.reinit_every=1"])
        main(["eval", run, "--threads", "1"])
        main(["report", run])


class Runner:
    """A fork server plus a ``bin/`` with its ``mmbalance`` and ``python`` clients."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.bin = self.base / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        # a short path: Unix socket paths are limited to ~100 bytes
        self.sock = str(Path(tempfile.mkdtemp(prefix="mmb-docs-")) / "s")
        env = self._env()
        self.server = subprocess.Popen([sys.executable, __file__, "--serve", self.sock], env=env, cwd=str(REPO),
                                       stdout=subprocess.PIPE, text=True, start_new_session=True)
        if self.server.stdout.readline().strip() != "ready":
            raise RuntimeError("the docs snippet server did not start")
        for kind in ("mmbalance", "python"):
            p = self.bin / kind
            p.write_text(_CLIENT.format(python=sys.executable, sock=self.sock, kind=kind))
            p.chmod(0o755)

    def _env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(PYTHONPATH=str(REPO / "src"), MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0")
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def workdir(self, name: str) -> Path:
        """A fresh directory that looks like the repository root (its top-level folders linked), without runs/."""
        d = self.base / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        d.mkdir(parents=True)
        for entry in REPO.iterdir():
            if entry.name not in (".git", "runs", ".venv", ".pytest_cache") and not entry.name.startswith("."):
                (d / entry.name).symlink_to(entry)
        return d

    def run(self, snip: Snippet, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
        if snip.lang in SHELL:
            cmd, stdin = ["bash", "-e", "-o", "pipefail", "-c", snip.code], None
        else:
            cmd, stdin = [str(self.bin / "python"), "-"], snip.code
        proc = subprocess.Popen(cmd, cwd=str(cwd), env=self._env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            out += f"\n[timed out after {timeout:.0f} s]"
        return subprocess.CompletedProcess(cmd, proc.returncode, out, None)

    def close(self) -> None:
        try:
            os.killpg(self.server.pid, signal.SIGKILL)  # the server and any command still running
        except ProcessLookupError:
            pass
        self.server.wait()


def inventory() -> Dict[str, int]:
    counts = {"run": 0, "slow": 0, "skip": 0, "shown": 0}
    for f in doc_files():
        for s in snippets(f):
            key = "shown" if not s.runnable else (s.mark or "run")
            counts[key] += 1
    return counts


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2])
    else:
        for f in doc_files():
            for s in snippets(f):
                tag = "shown" if not s.runnable else (s.mark or "run")
                print(f"{tag:5s} {s}  [{s.lang}] {s.reason}")
        print(inventory())

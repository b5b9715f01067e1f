"""Run a planned grid in parallel: local worker processes (``compare --jobs N``) or cluster jobs through
submitit (``compare --launcher submitit``).

Both executors take the plan of :func:`mmbalance.report.compare.plan_grid` and return the same outcome
mapping as the sequential :func:`~mmbalance.report.compare.run_grid` (``{run dir: {status, skipped,
error}}``), so resuming, aggregation and the tables are shared. Every run is trained by :func:`run_one` in a
fresh process from its own config; a run's numbers depend only on that config (it is seeded) and on its
thread count, so ``--jobs 2`` gives the same table as ``--jobs 1`` with the same ``--threads``
(``tests/test_parallel_grid.py``). Wall times differ, of course.

This module imports neither torch nor submitit at import time: a spawned worker must choose its GPU
(``CUDA_VISIBLE_DEVICES``) before torch starts.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..config import ConfigError

Outcome = Dict[Path, Dict[str, Any]]
#: keys of a launcher config's ``submitit`` section that mmbalance reads itself; the rest go to submitit
_SUBMITIT_OWN_KEYS = {"cluster", "folder", "parameters"}


def run_one(cfg_dict: Dict[str, Any], threads: Optional[int]) -> Dict[str, Any]:
    """Train (or resume) one run in this process from its config dict; what a worker or a cluster job runs."""
    from ..config import Config
    from .compare import set_threads, train_run

    if threads:
        set_threads(threads)
    t0 = time.time()
    summary = train_run(Config.from_dict(cfg_dict))
    return {"test_acc": summary["test"]["acc"], "best_epoch": summary["best_epoch"], "seconds": time.time() - t0}


def _todo(plan: List[Dict[str, Any]], say: Callable[[str], None]) -> List[Dict[str, Any]]:
    """The runs still to train; completed ones are announced and skipped."""
    for r in plan:
        if r["status"] == "complete":
            say(f"{r['method']} seed {r['seed']}: complete, skipped ({r['dir']})")
    return [r for r in plan if r["status"] != "complete"]


def _job_config(r: Dict[str, Any]) -> Dict[str, Any]:
    return r["cfg"].override(["train.progress=false"]).to_dict()


def _record(outcome: Outcome, r: Dict[str, Any], result: Optional[Dict[str, Any]], error: Optional[BaseException],
            say: Callable[[str], None], k: int, n: int) -> None:
    tag = f"[{k}/{n}] {r['method']} seed {r['seed']}"
    if error is not None:
        msg = f"{type(error).__name__}: {error}".strip().splitlines()
        outcome[r["dir"]] = {"status": "failed", "error": msg[-1] if msg else type(error).__name__}
        say(f"{tag}: FAILED: {outcome[r['dir']]['error']}")
    else:
        how = "resumed, " if r["status"] == "resume" else ""
        outcome[r["dir"]] = {"status": "complete", "skipped": False}
        say(f"{tag}: {how}test acc {result['test_acc']:.4f} (best epoch {result['best_epoch']}), "
            f"{result['seconds']:.1f} s")


def _finish(plan: List[Dict[str, Any]], outcome: Outcome) -> Outcome:
    for r in plan:
        outcome.setdefault(r["dir"], {"status": "complete", "skipped": True} if r["status"] == "complete" else {})
    return outcome


# ---------------------------------------------------------------------------- local worker processes
def visible_devices(plan: List[Dict[str, Any]]) -> List[str]:
    """GPU ids the workers share (round-robin, one per worker while there are enough), or ``[]`` for CPU runs."""
    if all(r["cfg"].train.device == "cpu" for r in plan):
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in listed.split(",") if d.strip()] if listed else []
    return ids or [str(i) for i in range(torch.cuda.device_count())]


def _init_worker(slots, devices: List[str]) -> None:
    slot = slots.get()
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]


def default_threads(jobs: int) -> int:
    """A worker's share of this machine's CPU threads."""
    return max(1, (os.cpu_count() or 1) // jobs)


def run_grid_parallel(plan: List[Dict[str, Any]], jobs: int, threads: Optional[int] = None,
                      stop_on_error: bool = False, say: Callable[[str], None] = print) -> Outcome:
    """Run the plan's unfinished runs in ``jobs`` spawned worker processes, each with ``threads`` CPU threads
    (default: its share, :func:`default_threads`) and, when the runs use a GPU, its own device."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    todo = _todo(plan, say)
    threads = threads or default_threads(jobs)
    outcome: Outcome = {}
    if not todo:
        return _finish(plan, outcome)
    devices = visible_devices(todo)
    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch/CUDA/thread-pool state
    slots = ctx.Queue()
    for i in range(jobs):
        slots.put(i)
    say(f"{len(todo)} run(s) on {min(jobs, len(todo))} worker process(es), {threads} CPU thread(s) each"
        + (f", GPUs {','.join(devices)} round-robin" if devices else ""))
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_init_worker,
                               initargs=(slots, devices))
    try:
        futures = {pool.submit(run_one, _job_config(r), threads): r for r in todo}
        pending, k, stopping = set(futures), 0, False
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(done, key=lambda f: todo.index(futures[f])):
                k += 1
                err = f.exception()
                _record(outcome, futures[f], None if err else f.result(), err, say, k, len(todo))
                if err is not None and stop_on_error and not stopping:
                    stopping = True
                    say("stopping (--stop-on-error): runs already started finish, the others are not started")
            if stopping:
                pending = {p for p in pending if not p.cancel()}  # cancel() fails only for a running run
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return _finish(plan, outcome)


# ---------------------------------------------------------------------------- cluster jobs (submitit)
def read_launcher_config(path: Optional[str]) -> Dict[str, Any]:
    """The ``submitit`` section of a YAML launcher config (an empty dict without a file)."""
    if not path:
        return {}
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"--launcher-config {p}: cannot read it as YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("submitit", {}), dict):
        raise ConfigError(f"--launcher-config {p}: expected a mapping with a 'submitit:' section")
    section = data.get("submitit") or {}
    unknown = sorted(set(section) - _SUBMITIT_OWN_KEYS)
    if unknown:
        raise ConfigError(f"--launcher-config {p}: unknown key(s) {unknown} in 'submitit:' (allowed: cluster, "
                          f"folder, parameters: {{timeout_min, cpus_per_task, gpus_per_node, slurm_partition, ...}})")
    if not isinstance(section.get("parameters", {}) or {}, dict):
        raise ConfigError(f"--launcher-config {p}: 'submitit.parameters' must be a mapping")
    return section


def make_executor(section: Dict[str, Any], out: Path):
    """A submitit ``AutoExecutor`` from a launcher section; every parameter is checked by submitit here,
    before anything is submitted."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher submitit needs the submitit package: pip install 'mmbalance[cluster]' "
                          "(or pip install submitit)") from None
    folder = Path(section.get("folder") or out / "submitit")
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=section.get("cluster"))
        executor.update_parameters(**(section.get("parameters") or {}))
    except (ValueError, TypeError, NameError, AssertionError, RuntimeError) as e:
        raise ConfigError(f"submitit launcher: {e}".splitlines()[0]) from None
    return executor


def run_grid_submitit(plan: List[Dict[str, Any]], executor, section: Dict[str, Any],
                      threads: Optional[int] = None, say: Callable[[str], None] = print) -> Outcome:
    """Submit the unfinished runs as one job array through ``executor`` (:func:`make_executor`) and wait for
    it. Ctrl-C cancels the jobs (so that the same command, run again, resumes them without two jobs writing
    one run folder)."""
    todo = _todo(plan, say)
    outcome: Outcome = {}
    if not todo:
        return _finish(plan, outcome)
    params = section.get("parameters") or {}
    threads = threads or int(params.get("cpus_per_task") or 1)
    jobs = executor.map_array(run_one, [_job_config(r) for r in todo], [threads] * len(todo))
    say(f"submitted {len(jobs)} job(s) through submitit ({executor.cluster}); job ids "
        f"{jobs[0].job_id}..{jobs[-1].job_id}; logs in {executor.folder}")
    try:
        for k, (job, r) in enumerate(zip(jobs, todo), 1):
            try:
                result, err = job.result(), None
            except Exception as e:  # noqa: BLE001 — submitit's FailedJobError/UncompletedJobError: record, go on
                result, err = None, e
            _record(outcome, r, result, err, say, k, len(todo))
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        raise
    return _finish(plan, outcome)


__all__ = ["run_one", "run_grid_parallel", "run_grid_submitit", "read_launcher_config", "make_executor",
           "visible_devices", "default_threads"]

"""Running an invocation: a task verb, an artifact verb, or training (a new run, a resume, a sweep,
several processes).

    execute(inv)  ->  the verb's result (a dict; `--json` prints it)

For `train` the core makes the run directory (or reopens it to resume), seeds everything, calls the
task's train function inside the run (Ctrl-C and SIGTERM save `last.pt`), and returns where the
run is and how it ended. A sweep resolves and checks every grid point, model build included,
before the first run starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import distributed
from .console import out, set_json, status
from .errors import UsageError
from .invocation import Invocation, write_record


class Interrupted(Exception):
    """Training stopped on Ctrl-C / SIGTERM after saving (the CLI says how to resume)."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


class ChildrenFailed(Exception):
    """`--nproc N`: a training process failed; it printed its own error line."""

    def __init__(self, code: int):
        super().__init__(f"exit code {code}")
        self.code = code


def apply_core(core: Any) -> None:
    set_json(bool(getattr(core, "json_output", False)))
    if getattr(core, "threads", None):
        import torch

        torch.set_num_threads(int(core.threads))


def execute(inv: Invocation, artifact: Any = None) -> Any:
    apply_core(inv.core)
    if inv.kind == "task":
        return inv.verb.call(None, inv.resolved().options)
    if inv.kind == "artifact":
        from .checkpoint import open_artifact

        if artifact is None:
            artifact = open_artifact(inv.target, which=inv.core.checkpoint)
        artifact.device = distributed.resolve_device(inv.core.device)
        return inv.verb.call(artifact, inv.resolved().options)
    return train(inv)


# ============================================================================ training
def train(inv: Invocation) -> Any:
    core = inv.core
    device = distributed.resolve_device(core.device)  # "no CUDA GPU" here, not in each process
    if core.print_config:  # as TOML (as config.toml holds it), or under --json as one JSON document
        resolved = (resume_invocation(inv)[0] if core.resume else inv).resolved()
        if core.json_output:
            return {**resolved.record(), **({"sweep": dict(inv.grid)} if inv.grid else {})}
        out.print(resolved.config_toml(), markup=False, highlight=False, end="")
        return None
    if core.nproc > 1 and distributed.world_size() == 1:
        return relaunch(inv)
    distributed.init(device)
    if inv.grid:
        return sweep(inv)
    if core.resume is not None:
        resumed, run_dir = resume_invocation(inv)
        return train_one(resumed, resume_dir=run_dir)
    return train_one(inv)


def train_one(inv: Invocation, *, resume_dir: Path | None = None, name_suffix: str | None = None) -> dict:
    """One run: resolve the options, make (or reopen) the run directory, call the task."""
    from .engine import seed_everything
    from .plugins import registry
    from .runs import Run

    started = time.time()  # the run's clock (and a --time-budget) covers what resolving does: reading the data
    inv = inv.resolved()  # bad options fail here, before a run directory exists
    core = inv.core
    for logger in core.logger:
        registry().logger(logger)
    seed_everything(core.seed)
    if resume_dir is not None:
        run = Run.open(resume_dir, resume=True, started=started, loggers=list(core.logger))
        if run.is_main:
            run.info["resumes"][-1]["changed"] = {k: _value(inv, k) for k in sorted(inv.given)}
            write_record(run.dir, inv)
    else:
        opts = dataclasses.asdict(inv.options)
        label = inv.verb.task.run_label(opts) if inv.verb.task.run_label else str(opts.get("model") or inv.task)
        name = "-".join(p for p in (core.name, name_suffix) if p) or None
        run = Run.create(inv.task, label, inv.record(), runs_dir=core.runs_dir, name=name, seed=core.seed,
                         device=str(distributed.resolve_device(core.device)), loggers=list(core.logger),
                         config_text=inv.config_toml(), started=started)
        run.update(options_given=sorted(inv.given - {"json_output", "runs_dir", "resume", "nproc", "config"}),
                   **data_facts(inv), **({"parent": inv.parent} if inv.parent else {}))
    with run:
        result = inv.verb.call(run, inv.options)
    if run.stop_requested:
        raise Interrupted(run.dir)
    return report(run, result)


def report(run: Any, result: Any) -> dict:
    """A finished run's result: shown as a table on stdout (rank 0, not under --json), returned for --json."""
    from .compare import final_metrics, result_table
    from .console import show

    final = final_metrics(run.dir) if run.is_main else {}
    show(result_table(run.dir, run.info, final))
    return {"run": str(run.dir), "status": run.info.get("status"), "best": run.info.get("best"), "final": final,
            "result": result}


def data_facts(inv: Invocation) -> dict:
    """The run's data as run.json records it (for `textlab diff`): its reference and a fingerprint of
    its files (names, sizes, modification times) or name, when the task has a `data` option."""
    from .data import resolve
    from .errors import TextlabError

    data = getattr(inv.options, "data", None)
    if not isinstance(data, str) or not data:
        return {}
    try:
        source = resolve(inv.task, data)
        return {"data": source.reference(), "data_fingerprint": source.fingerprint()}
    except (TextlabError, OSError):
        return {}


def rerun(run_dir: Path, changes: dict, core: dict) -> Any:
    """`textlab rerun RUN --set KEY=VALUE`: a new run with RUN's stored options, changed where told
    (`core`: how to run it, such as --runs-dir or --json, not recorded as changes)."""
    inv = Invocation.from_record(run_dir, changes, where="--set ")
    return execute(dataclasses.replace(inv, core=dataclasses.replace(inv.core, **core)))


def _value(inv: Invocation, name: str) -> Any:
    from .options import plain

    return plain(getattr(inv.options, name) if hasattr(inv.options, name) else getattr(inv.core, name, None))


def resume_invocation(inv: Invocation) -> tuple[Invocation, Path]:
    """`train --resume RUN [options]`: the run's stored options, with those given now on top."""
    from .rundir import locate_run

    run_dir = locate_run(inv.core.resume)
    stored = Invocation.from_record(run_dir)
    if stored.task != inv.task:
        raise UsageError(f"run {run_dir} belongs to task {stored.task!r}, not {inv.task!r}")
    if "seed" in inv.given and inv.core.seed != stored.core.seed:
        raise UsageError(f"a resume keeps the run's seed ({stored.core.seed}): its data order and random state "
                         "come from it", hint="drop --seed, or start a new run with it")
    for key in ("precision", "compile"):
        if key in inv.given and getattr(inv.core, key) != getattr(stored.core, key):
            raise UsageError(f"a resume keeps the run's --{key} ({getattr(stored.core, key)})",
                             hint=f"drop --{key}, or start a new run with it")
    if inv.grid:
        raise UsageError("--sweep starts new runs; it cannot be combined with --resume")
    if inv.core.config is not None:
        raise UsageError("--config starts a new run; a resume keeps the run's own options",
                         hint="give the options to change on the command line after --resume RUN")
    for key in ("name", "runs_dir"):  # they place a new run directory; a resume has one
        if key in inv.given:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{flag} names a new run directory; a resume continues in {run_dir}",
                             hint=f"drop {flag}, or start a new run (textlab rerun {run_dir})")
    task_given = {k for k in inv.given if hasattr(inv.options, k)}
    core_given = {k for k in inv.given if k in ("device", "threads", "logger")}
    opts = dataclasses.replace(stored.options, **{k: getattr(inv.options, k) for k in task_given})
    core = dataclasses.replace(stored.core, **{k: getattr(inv.core, k) for k in core_given},
                               json_output=inv.core.json_output, runs_dir=inv.core.runs_dir)
    return dataclasses.replace(stored, options=opts, core=core, given=frozenset(task_given)), run_dir


def sweep(inv: Invocation) -> dict:
    """One run per grid point; every point resolved and checked before the first run starts."""
    from .compare import compare_runs

    points = []
    for combo in itertools.product(*[[(key, v) for v in values] for key, values in inv.grid]):
        label = ",".join(f"{k}={v}" for k, v in combo)
        point = inv.with_changes(dict(combo), where=f"--sweep {label}: ")
        try:
            point.resolved()  # the task's own checks (a model that cannot be built...) for every point
        except UsageError as exc:
            raise UsageError(f"--sweep {label}: {exc.message}", hint=exc.hint) from None
        points.append((combo, label, point))
    results, dirs = [], []
    for i, (combo, label, point) in enumerate(points, 1):
        status(f"sweep {i}/{len(points)}: {label}")
        res = train_one(point, name_suffix=label)
        results.append({"values": {k: v for k, v in combo}, **res})
        dirs.append(Path(res["run"]))
    return {"sweep": results, "comparison": compare_runs(dirs) if dirs else {}}


def relaunch(inv: Invocation) -> dict:
    """`textlab train ... --nproc N` = `torchrun --standalone --nproc_per_node N -m textlab train ...`."""
    nproc = int(inv.core.nproc)
    args = inv.to_argv(drop={"nproc"})
    cmd = [sys.executable, "-m", "textlab.launch", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "textlab", *args]
    status("launching: torchrun --standalone --nproc_per_node " + str(nproc) + " -m textlab " + " ".join(args))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default too; --threads still overrides
    code = subprocess.call(cmd, env=env)
    if code != 0:
        raise ChildrenFailed(code)
    return {"_relaunched": True, "nproc": nproc, "exit_code": code}

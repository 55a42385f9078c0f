"""The `textlab` command line, generated from what the plugins register.

The CLI layer only parses and calls. Each verb is a group; each task that supports the verb is a
command in it, built from the task's plain function (its typed keyword options become real
options with real `--help`). Artifact-first verbs (eval, neighbors, generate...) resolve their
first argument, a run directory or checkpoint, to the task that wrote it and then parse the rest
of the line with that task's options.

Options every generated command gets from the core:
  all verbs          --threads N, --json
  train              --seed, --device, --runs-dir, --name, --logger, --sweep KEY=V1,V2, --resume RUN
  artifact verbs     --device, --checkpoint best|last
"""

from __future__ import annotations

import enum
import errno
import inspect
import itertools
import json
import os
import sys
import traceback
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import typer
from typer import _click  # typer vendors click; pinned to a tested range in pyproject.toml
from typer.core import TyperGroup

from . import __version__
from .console import error_line, json_mode, out, set_json, status
from .errors import PluginError, TextlabError, UsageError, first_line
from .plugins import registry, verb_kind
from .specs import CORE_VERBS, TaskSpec

VERB_HELP = {
    "prep": "Prepare a task's raw data (clean, split, cache).",
    "vocab": "Build a task's vocabulary.",
    "pairs": "Make training pairs (word2vec: skip-gram pair shards).",
    "train": "Train a model of a task into a new run directory.",
    "eval": "Evaluate a run directory or checkpoint.",
    "neighbors": "Nearest neighbours in a trained embedding.",
    "generate": "Generate from a run directory or checkpoint.",
    "analyze": "Analyze a task's data (`analyze TASK`) or compare runs (`analyze RUN...`).",
}
CORE_COMMANDS = {"plugins", "runs", "submit", "bundle"}

# Options the core adds. A task must not declare parameters with these names.
RESERVED = {"threads", "json_output", "seed", "device", "runs_dir", "name", "logger", "sweep", "resume", "checkpoint",
            "nproc"}


# ============================================================================ common parameters
def _kw(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _common_params(kind: str) -> list[inspect.Parameter]:
    core = "core options"
    params = [
        _kw("threads", Annotated[Optional[int], typer.Option(min=1, help="CPU threads for torch (default: torch's choice).",
                                                             rich_help_panel=core)], None),
        _kw("json_output", Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.",
                                                        rich_help_panel=core)], False),
    ]
    if kind == "run":
        params += [
            _kw("seed", Annotated[int, typer.Option(help="Random seed (data order, init, dropout).", rich_help_panel=core)], 0),
            _kw("device", Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.", rich_help_panel=core)], "auto"),
            _kw("runs_dir", Annotated[Optional[Path], typer.Option(help="Root of run directories (env TEXTLAB_RUNS, else ./runs).",
                                                                   rich_help_panel=core)], None),
            _kw("name", Annotated[Optional[str], typer.Option(help="Suffix for the run directory name.", rich_help_panel=core)], None),
            _kw("logger", Annotated[Optional[list[str]], typer.Option(help="Also log metrics to: csv, tensorboard, ... (repeatable).",
                                                                      rich_help_panel=core)], None),
            _kw("sweep", Annotated[Optional[list[str]], typer.Option(help="KEY=V1,V2,...: one run per value (repeat for a grid), then a comparison.",
                                                                     rich_help_panel=core)], None),
            _kw("resume", Annotated[Optional[Path], typer.Option(help="Continue the run in this directory from its last.pt.",
                                                                 rich_help_panel=core)], None),
            _kw("nproc", Annotated[int, typer.Option(min=1, help="Train on N processes: relaunches this command under "
                                                     "torchrun (DDP; gloo on CPU, nccl on GPU).", rich_help_panel=core)], 1),
        ]
    if kind == "artifact":
        params += [
            _kw("device", Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.", rich_help_panel=core)], "auto"),
            _kw("checkpoint", Annotated[Literal["best", "last"], typer.Option(help="Which checkpoint of a run directory.",
                                                                              rich_help_panel=core)], "best"),
        ]
    return params


# ============================================================================ command building
def _task_params(task: TaskSpec, verb: str, func: Callable[..., Any], kind: str) -> list[inspect.Parameter]:
    sig = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"task {task.name!r}, verb {verb!r}: cannot read its option types ({exc})") from None
    params = list(sig.parameters.values())
    if kind in ("run", "artifact"):
        params = params[1:]
    out_params = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise PluginError(f"task {task.name!r}, verb {verb!r}: *args/**kwargs cannot become options")
        if p.name in RESERVED or p.name == "textlab_ctx":
            raise PluginError(f"task {task.name!r}, verb {verb!r}: option {p.name!r} is reserved by the core")
        ann = hints.get(p.name, p.annotation if p.annotation is not p.empty else str)
        if p.name == "model" and kind == "run":
            ann = _model_choice(task.name, ann)
        out_params.append(p.replace(annotation=ann, kind=p.KEYWORD_ONLY))
    return out_params


def _model_choice(task: str, ann: Any) -> Any:
    """`--model` of a train verb: the choices are the models registered for the task."""
    names = tuple(m.name for m in registry().models_for(task))
    if not names:
        return ann
    meta = tuple(getattr(ann, "__metadata__", ()))
    choice = Literal.__getitem__(names)  # type: ignore[attr-defined]
    return Annotated.__class_getitem__((choice, *meta)) if meta else choice  # type: ignore[attr-defined]


def _make_command(task: TaskSpec, verb: str, func: Callable[..., Any], kind: str) -> Callable[..., Any]:
    task_params = _task_params(task, verb, func, kind)
    names = [p.name for p in task_params]
    ctx_param = _kw("textlab_ctx", typer.Context, inspect.Parameter.empty)
    params = [ctx_param, *task_params, *_common_params(kind)]

    def callback(**kwargs: Any) -> Any:
        ctx = kwargs.pop("textlab_ctx")
        options = {n: _plain_value(kwargs.pop(n)) for n in names}
        common = kwargs
        _apply_common(common)
        if kind == "run":
            result = _train(ctx, task, func, options, common)
        elif kind == "artifact":
            artifact = ctx.meta["textlab.artifact"]
            from .distributed import resolve_device

            artifact.device = resolve_device(common["device"])
            result = func(artifact, **options)
        else:
            result = func(**options)
        if not _REPLAY:  # sweeps and resumes re-enter this callback: print once, at the outside
            _emit(result)
        return result

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__annotations__ = {p.name: p.annotation for p in params}
    callback.__name__ = f"{verb}_{task.name}"
    callback.__doc__ = inspect.getdoc(func) or task.help
    return callback


def _plain_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _apply_common(common: dict) -> None:
    set_json(bool(common.get("json_output")))
    if common.get("threads"):
        import torch

        torch.set_num_threads(int(common["threads"]))


def _emit(result: Any) -> None:
    from . import distributed

    if isinstance(result, dict) and result.get("_relaunched"):
        return  # `--nproc N`: the processes printed (rank 0 alone); the launcher prints nothing more
    if json_mode() and distributed.is_main():
        out.print_json(json.dumps(_jsonable(result), ensure_ascii=False), ensure_ascii=False)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return _jsonable(dataclasses.asdict(obj))
    return str(obj)


# ============================================================================ train: runs, sweeps, resume
_REPLAY: dict[str, Any] = {}


def _train(ctx: Any, task: TaskSpec, func: Callable[..., Any], options: dict, common: dict) -> Any:
    from . import distributed
    from .loop import seed_everything
    from .runs import Run

    device = distributed.resolve_device(common["device"])  # "no CUDA GPU" here, not in each process
    if common.get("nproc", 1) > 1 and distributed.world_size() == 1:
        return _relaunch_under_torchrun(int(common["nproc"]))
    distributed.init(device)
    if common.get("sweep") and not _REPLAY.get("in_sweep"):
        return _sweep(ctx, task, common["sweep"])
    if common.get("resume") and not _REPLAY.get("resume_dir"):
        return _resume(ctx, task, Path(common["resume"]))
    config = {**_jsonable(options), "seed": common["seed"], "device": common["device"],
              "threads": common.get("threads"), "logger": common.get("logger") or []}
    for logger in common.get("logger") or []:
        registry().logger(logger)  # unknown logger: fail before the run directory exists
    seed_everything(common["seed"])
    if _REPLAY.get("resume_dir"):
        from .data import read_json

        stored_seed = read_json(Path(_REPLAY["resume_dir"]) / "config.json", "config.json").get("seed", common["seed"])
        if stored_seed != common["seed"]:
            raise UsageError(f"a resume keeps the run's seed ({stored_seed}): its data order and random "
                             "state come from it", hint="drop --seed, or start a new run with it")
        run = Run.open(_REPLAY["resume_dir"], resume=True)
        if run.is_main and run.config != config:
            changed = {k: v for k, v in config.items() if run.config.get(k) != v}
            run.info["resumes"][-1]["changed"] = changed
            run.config = config
            from .data import write_json

            write_json(run.dir / "config.json", config)
    else:
        label = task.run_label(options) if task.run_label else str(options.get("model") or task.name)
        name = common.get("name")
        if _REPLAY.get("sweep_name"):
            name = "-".join(p for p in (name, _REPLAY["sweep_name"]) if p)
        run = Run.create(task.name, label, config, runs_dir=common.get("runs_dir"), name=name,
                         seed=common["seed"], device=str(device), loggers=common.get("logger") or [])
    with run:
        result = func(run, **options)
    if run.stop_requested:
        raise Interrupted(run.dir)
    return {"run": str(run.dir), "status": run.info.get("status"), "best": run.info.get("best"), "result": result}


def _relaunch_under_torchrun(nproc: int) -> Any:
    """`textlab train ... --nproc N` = `torchrun --standalone --nproc_per_node N -m textlab train ...`."""
    import subprocess

    args = _strip_options(list(_ARGV), {"--nproc"})
    cmd = [sys.executable, "-m", "textlab.launch", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "textlab", *args]
    status("launching: torchrun --standalone --nproc_per_node " + str(nproc) + " -m textlab " + " ".join(args))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default too; --threads still overrides
    code = subprocess.call(cmd, env=env)
    if code != 0:
        _CHILDREN_SAID[0] = True  # the processes printed their own line
        raise typer.Exit(code)
    return {"_relaunched": True, "nproc": nproc, "exit_code": code}


_ARGV: list[str] = []
_CHILDREN_SAID = [False]


class Interrupted(Exception):
    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def _param_tokens(param: Any, value: Any) -> list[str]:
    """Command-line tokens that give `param` the value `value` (for replaying a stored config)."""
    if value is None:
        return []
    if getattr(param, "param_type_name", "option") == "argument":
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    opt = max(param.opts, key=len)
    if getattr(param, "is_flag", False) and not getattr(param, "count", False):
        if value:
            return [opt]
        secondary = getattr(param, "secondary_opts", None)
        return [max(secondary, key=len)] if secondary else []
    if getattr(param, "multiple", False):
        return [t for v in value for t in (opt, *(map(str, v) if isinstance(v, (list, tuple)) else [str(v)]))]
    if isinstance(value, (list, tuple)):
        return [opt, *map(str, value)]
    return [opt, str(value)]


def _find_param(command: Any, key: str) -> Any:
    norm = key.strip().lstrip("-").replace("-", "_")
    for p in command.params:
        if p.name == norm or any(o.lstrip("-").replace("-", "_") == norm for o in getattr(p, "opts", [])):
            return p
    return None


def _invoke(ctx: Any, args: list[str], **replay: Any) -> Any:
    """Run this task's train command again with `args` (sweeps and resumes parse like users type)."""
    saved = dict(_REPLAY)
    _REPLAY.update(replay)
    try:
        with ctx.command.make_context(ctx.info_name, list(args), parent=ctx.parent) as sub:
            return ctx.command.invoke(sub)
    finally:
        _REPLAY.clear()
        _REPLAY.update(saved)


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _sweep(ctx: Any, task: TaskSpec, specs: list[str]) -> Any:
    from .compare import compare_runs

    axes: list[list[tuple[Any, str]]] = []
    for spec in specs:
        key, eq, values = spec.partition("=")
        param = _find_param(ctx.command, key)
        if not eq or not values:
            raise UsageError(f"--sweep {spec!r} must look like KEY=V1,V2,...")
        if param is None or param.name in RESERVED - {"seed"}:
            names = sorted(p.name for p in ctx.command.params if p.name not in RESERVED)
            raise UsageError(f"--sweep: {task.name} train has no option {key!r}", hint="options: " + ", ".join(names))
        if any(axis[0][0].name == param.name for axis in axes if axis):
            raise UsageError(f"--sweep names {param.name} twice", hint=f"give all its values once: --sweep {key}=V1,V2,...")
        axis = [(param, v.strip()) for v in values.split(",") if v.strip()]
        if not axis:
            raise UsageError(f"--sweep {spec!r} gives no values", hint="--sweep KEY=V1,V2,...")
        if getattr(param, "is_flag", False):
            for _, v in axis:
                if v.lower() not in _TRUE | _FALSE:
                    raise UsageError(f"--sweep {key}={v}: a flag takes true or false (1/0, yes/no, on/off)")
        axes.append(axis)
    base = _strip_options(ctx.meta.get("textlab.args", []), {"--sweep"})
    results, dirs = [], []
    runs = []
    for combo in itertools.product(*axes):
        args = list(base)
        for param, value in combo:
            if getattr(param, "is_flag", False):
                truthy = value.lower() in _TRUE
                args += _param_tokens(param, truthy)
            else:
                args += [max(param.opts, key=len), value]
        label = ",".join(f"{p.name}={v}" for p, v in combo)
        try:  # every combination parses before the first run starts: a typo in the last value costs nothing
            with ctx.command.make_context(ctx.info_name, list(args), parent=ctx.parent):
                pass
        except _click.exceptions.ClickException as exc:
            raise UsageError(f"--sweep {label}: {exc.format_message()}") from None
        runs.append((combo, args, label))
    for i, (combo, args, label) in enumerate(runs, 1):
        status(f"sweep {i}/{len(runs)}: {label}")
        try:
            res = _invoke(ctx, args, in_sweep=True, sweep_name=label)
        except Interrupted:
            raise
        results.append({"values": {p.name: v for p, v in combo}, **(res or {})})
        if res and res.get("run"):
            dirs.append(Path(res["run"]))
    comparison = compare_runs(dirs) if dirs else {}
    return {"sweep": results, "comparison": comparison}


def _strip_options(args: list[str], names: set[str]) -> list[str]:
    out_args, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        flag = a.split("=", 1)[0]
        if flag in names:
            skip = "=" not in a
            continue
        out_args.append(a)
    return out_args


def _resume(ctx: Any, task: TaskSpec, run_dir: Path) -> Any:
    from .data import read_json
    from .runs import find_run

    if not (run_dir / "run.json").exists():
        found = find_run(str(run_dir))
        if found is None:
            raise UsageError(f"no such run directory: {run_dir}", hint="see 'textlab runs'")
        run_dir = found
    info = read_json(run_dir / "run.json", "run.json")
    if info.get("task") != task.name:
        raise UsageError(f"run {run_dir} belongs to task {info.get('task')!r}, not {task.name!r}")
    if info.get("status") == "finished" and not _explicit(ctx):
        status(f"run {run_dir} already finished; resuming continues it with the same options")
    stored = read_json(run_dir / "config.json", "config.json")
    explicit = _explicit(ctx)
    args: list[str] = []
    for param in ctx.command.params:
        if param.name in explicit or param.name in ("resume", "sweep", "runs_dir", "name", "json_output"):
            continue
        if param.name in stored:
            args += _param_tokens(param, stored[param.name])
    args += _strip_options(ctx.meta.get("textlab.args", []), {"--resume"})
    return _invoke(ctx, args, resume_dir=run_dir)


def _explicit(ctx: Any) -> set[str]:
    src = _click.core.ParameterSource.COMMANDLINE
    return {p.name for p in ctx.command.params if ctx.get_parameter_source(p.name) == src}


# ============================================================================ groups
class VerbGroup(TyperGroup):
    """A verb: its commands are tasks. Unknown or unsupported tasks get one clear line."""

    verb = ""
    kind = "task"

    def format_commands(self, ctx: Any, formatter: Any) -> None:  # plain help: call them tasks
        rows = [(n, c.get_short_help_str(60)) for n, c in self.commands.items()]
        if rows:
            with formatter.section("Tasks"):
                formatter.write_dl(rows)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        first = args[0]
        reg = registry()
        if self.kind == "artifact":
            from .checkpoint import open_artifact

            if first in self.commands and any(a in ("--help", "-h") for a in args[1:]) and not Path(first).exists():
                return first, self.commands[first], args[1:]  # `textlab eval TASK --help`: that task's options

            which = "last" if any(a in ("--checkpoint=last",) for a in args) or _after(args, "--checkpoint") == "last" else "best"
            artifact = open_artifact(first, which=which)
            reg.task(artifact.task, self.verb)
            ctx.meta["textlab.artifact"] = artifact
            ctx.meta["textlab.args"] = args[1:]
            return first, self.commands[artifact.task], args[1:]
        if self.verb == "train" and ctx.params.get("resume"):
            return self._resume_target(ctx, args)
        if first in self.commands:
            ctx.meta["textlab.args"] = args[1:]
            return first, self.commands[first], args[1:]
        if self.verb == "analyze" and not first.startswith("-"):
            return "RUN", _compare_command(), args
        if first.startswith("-"):
            return super().resolve_command(ctx, args)
        reg.task(first, self.verb)  # raises "unknown task" or "does not support"
        return super().resolve_command(ctx, args)


    def _resume_target(self, ctx: Any, args: list[str]) -> tuple[str, Any, list[str]]:
        """`textlab train --resume RUN [options]`: the task comes from the run's run.json."""
        from .data import read_json
        from .runs import find_run

        resume = Path(ctx.params["resume"])
        run_dir = resume if (resume / "run.json").exists() else find_run(str(resume))
        if run_dir is None:
            raise UsageError(f"no such run directory: {resume}", hint="see 'textlab runs'")
        task = str(read_json(run_dir / "run.json", "run.json").get("task"))
        registry().task(task, "train")
        rest = args[1:] if args and args[0] == task else list(args)
        rest = ["--resume", str(run_dir), *rest]
        ctx.meta["textlab.args"] = list(rest)  # click consumes the list it parses
        return task, self.commands[task], rest


def _after(args: list[str], flag: str) -> str | None:
    for a, b in zip(args, args[1:]):
        if a == flag:
            return b
    return None


def _verb_group(verb: str, kind: str) -> type:
    return type(f"{verb.title()}Group", (VerbGroup,), {"verb": verb, "kind": kind})


def _compare_command() -> Any:
    app = typer.Typer(add_completion=False)

    @app.command()
    def analyze(
        runs: Annotated[list[str], typer.Argument(help="Run directories (or folders of runs, or run names).")],
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="Where the PNG curves go (default: the first run's plots/).")] = None,
        x: Annotated[Literal["auto", "step", "epoch", "time"], typer.Option(help="x axis of the curves.")] = "auto",
        json_output: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    ) -> Any:
        """Compare runs: best and last value of each metric per split, and PNG learning curves."""
        from .compare import compare_runs
        from .runs import iter_run_dirs

        set_json(json_output)
        dirs = list(dict.fromkeys(iter_run_dirs(runs)))
        result = compare_runs(dirs, out_dir, x=x)
        _emit(result)
        return result

    return typer.main.get_command(app)


# ============================================================================ core commands
def _plugins_command(json_output: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List plugins: version, status, and the tasks, models, datasets, metrics and loggers each registers."""
    from rich.table import Table

    reg = registry()
    if json_output:
        out.print_json(json.dumps([p.to_json() for p in reg.plugins]))
        return
    t = Table(title="textlab plugins")
    for col in ("plugin", "version", "status", "registers"):
        t.add_column(col)
    for p in reg.plugins:
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in p.registered.items() if v)
        name = p.name + (" (core)" if p.name == "textlab" else "")
        state = "[green]ok[/green]" if p.ok else f"[red]failed[/red]: {p.error}"
        t.add_row(name, p.version, state, what or "-")
    out.print(t)


def _runs_command(
    runs_dir: Annotated[Optional[Path], typer.Option(help="Root of run directories (env TEXTLAB_RUNS, else ./runs).")] = None,
    task: Annotated[Optional[str], typer.Option(help="Only runs of this task.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List runs: task, model, status, best metric, age."""
    from rich.table import Table

    from .runs import list_runs, runs_root

    rows = list_runs(runs_dir, task)
    from .slurm import annotate

    annotate(rows)
    if json_output:
        out.print_json(json.dumps(rows, default=str))
        return
    if not rows:
        status(f"no runs under {runs_root(runs_dir)}")
        return
    t = Table(title=f"runs under {runs_root(runs_dir)}")
    for col in ("run", "task", "model", "status", "best", "age"):
        t.add_column(col)
    colours = {"finished": "green", "running": "cyan", "failed": "red", "interrupted": "yellow", "stale": "magenta",
               "queued": "blue"}
    for r in sorted(rows, key=lambda r: r.get("start") or ""):
        best = r.get("best") if isinstance(r.get("best"), dict) else {}
        value = best.get("value")
        best_s = f"{best.get('metric')} {value:.4g}" if isinstance(value, (int, float)) else "-"
        st = r.get("status", "?")
        if isinstance(r.get("slurm"), dict):
            st += f" (job {r['slurm'].get('job_id')})"
        t.add_row(Path(r["path"]).name, r.get("task", "?"), r.get("model") or "-",
                  f"[{colours.get(st.split()[0], 'white')}]{st}[/]",
                  best_s, _age(r.get("start")))
    out.print(t)


def _age(start: str | None) -> str:
    from datetime import datetime

    if not start:
        return "?"
    try:
        secs = (datetime.now().astimezone() - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit} ago"
    return f"{secs:.0f}s ago"


def _submit_command(
    args: Annotated[list[str], typer.Argument(help="The textlab command to run, after --: train TASK [options].")],
    partition: Annotated[Optional[str], typer.Option(help="SLURM partition.")] = None,
    time: Annotated[Optional[str], typer.Option(help="Time limit, e.g. 04:00:00; the job requeues itself at the limit.")] = None,
    nodes: Annotated[int, typer.Option(min=1, help="Nodes.")] = 1,
    gpus: Annotated[int, typer.Option(min=0, help="GPUs per node (--gres=gpu:N).")] = 0,
    cpus: Annotated[Optional[int], typer.Option(min=1, help="CPUs per task.")] = None,
    mem: Annotated[Optional[str], typer.Option(help="Memory per node, e.g. 16G.")] = None,
    account: Annotated[Optional[str], typer.Option(help="SLURM account.")] = None,
    qos: Annotated[Optional[str], typer.Option(help="SLURM QOS.")] = None,
    nproc: Annotated[int, typer.Option(min=1, help="Training processes per node (torchrun, DDP).")] = 1,
    grace: Annotated[int, typer.Option(min=10, help="Seconds before the time limit at which to save and requeue.")] = 120,
    home: Annotated[Optional[Path], typer.Option(help="Shared TEXTLAB_HOME for the job (default: the current one).")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option(help="Root of run directories (a shared filesystem).")] = None,
    python: Annotated[Optional[str], typer.Option(help="Python of the job (default: this one).")] = None,
    sbatch: Annotated[Optional[list[str]], typer.Option(help="Extra #SBATCH line, e.g. --sbatch=--constraint=a100.")] = None,
    online: Annotated[bool, typer.Option(help="Do not set the offline variables in the job.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Write the job script and print it; do not submit.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Queue a training run on SLURM: textlab submit --time 04:00:00 -- train agnews --rnn lstm."""
    from .slurm import submit

    set_json(json_output)
    result = submit(list(args), partition=partition, time=time, nodes=nodes, gpus=gpus, cpus=cpus, mem=mem,
                    account=account, qos=qos, nproc=nproc, grace=grace, home=str(home) if home else None,
                    runs_dir=str(runs_dir) if runs_dir else None, python=python, extra=sbatch, offline=not online,
                    dry_run=dry_run)
    if json_output:
        _emit(result)
    elif dry_run:
        out.print(result["text"], markup=False, highlight=False)
        status(f"dry run: nothing written or submitted (the script would be {result['script']})")
    else:
        out.print(f"submitted job {result['job_id']}: run directory {result['run_dir']}", markup=False, highlight=False)


def _bundle_command(
    task: Annotated[str, typer.Option(help="The task the offline node will run.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Bundle folder to create.")],
    data: Annotated[Optional[list[str]], typer.Option(help="Data to bundle (hub name, local path or a registered "
                                                            "dataset); repeatable. Default: sample.")] = None,
    include: Annotated[Optional[list[Path]], typer.Option(help="Local tokenizer/model folder to carry along; repeatable.")] = None,
    wheels: Annotated[bool, typer.Option(help="Add a wheelhouse of textlab and its dependencies (pinned).")] = True,
    options: Annotated[Optional[list[str]], typer.Argument(help="After --: options for the task's prep/vocab/pairs "
                                                                 "verbs, e.g. -- --min-count 10.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Gather what a node without internet needs: data, prepared caches, local models, wheels."""
    from .bundle import make_bundle

    set_json(json_output)
    result = make_bundle(task, list(data or []), out_dir, include=list(include or []), wheels=wheels,
                         extra_args=list(options or []))
    if json_output:
        _emit(result)
    else:
        from rich.table import Table

        t = Table(title=f"bundle {result['bundle']}")
        t.add_column("what")
        t.add_column("value")
        t.add_row("data names", ", ".join(result["data"]))
        t.add_row("prepared", json.dumps(result["prepared"]))
        t.add_row("extra folders", ", ".join(result["extra"]) or "-")
        t.add_row("wheels", str(result["wheels"]))
        t.add_row("use it", f"source {result['bundle']}/env.sh (see {result['bundle']}/README.md)")
        out.print(t)


# ============================================================================ the app
def build_app() -> Any:
    """The click command of the whole CLI, built from the registry."""
    reg = registry()
    tasks = sorted(reg.tasks.values(), key=lambda t: t.name)
    task_lines = "\n\n".join(f"{t.name}: {t.help}" for t in tasks) or "(no task plugins installed)"
    app = typer.Typer(
        name="textlab",
        help=f"Train and study text models: one command for the whole loop.\n\nTasks:\n\n{task_lines}\n\n"
             "Run 'textlab VERB --help' for a verb's tasks and 'textlab VERB TASK --help' for a task's options.",
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )

    @app.callback(invoke_without_command=True)
    def root(
        ctx: typer.Context,
        offline: Annotated[bool, typer.Option("--offline", help="No network: set the Hugging Face offline variables.")] = False,
        version: Annotated[bool, typer.Option("--version", help="Show the version and exit.", is_eager=True)] = False,
    ) -> None:
        if version:
            out.print(f"textlab {__version__}")
            raise typer.Exit(0)
        if ctx.invoked_subcommand is None:
            out.print(ctx.get_help())
            raise typer.Exit(0)
        if offline:
            from .data import set_offline

            set_offline()

    for verb, kind in reg.verbs().items():
        if verb in CORE_COMMANDS:
            raise PluginError(f"a task adds verb {verb!r}, which is a core command")
        added = reg.tasks_for(verb)
        first = (inspect.getdoc(added[0].verbs[verb]) or "").split("\n\n")[0].replace("\n", " ") if added else ""
        sub = typer.Typer(cls=_verb_group(verb, kind), no_args_is_help=True, add_completion=False,
                          help=VERB_HELP.get(verb) or (f"{first} (added by: {', '.join(t.name for t in added)})"
                                                       if first else f"'{verb}' (added by a task plugin)."))
        for task in added:
            func = task.verbs[verb]
            got = verb_kind(func)
            if got != kind:
                raise PluginError(f"task {task.name!r}: verb {verb!r} has kind {got!r}, another task gives it kind {kind!r}")
            sub.command(task.name, help=inspect.getdoc(func) or task.help, rich_help_panel="Tasks",
                        short_help=task.help)(_make_command(task, verb, func, kind))
        if verb == "train":
            _add_train_resume(sub)
        app.add_typer(sub, name=verb)
    app.command("plugins")(_plugins_command)
    app.command("runs")(_runs_command)
    app.command("submit")(_submit_command)
    app.command("bundle")(_bundle_command)
    return typer.main.get_command(app)


def _add_train_resume(sub: typer.Typer) -> None:
    @sub.callback(invoke_without_command=True, context_settings={"ignore_unknown_options": True})
    def train_group(
        ctx: typer.Context,
        resume: Annotated[Optional[Path], typer.Option(help="Resume this run directory (its task is read from run.json); "
                                                            "options after it override the stored ones.")] = None,
    ) -> None:
        if ctx.invoked_subcommand is None:
            if resume is None:
                out.print(ctx.get_help())
                raise typer.Exit(0)
            cmd_name, command, args = ctx.command._resume_target(ctx, [])
            with command.make_context(cmd_name, args, parent=ctx) as sub_ctx:
                command.invoke(sub_ctx)


# ============================================================================ entry point
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. Every user error is one line on stderr."""
    debug = bool(os.environ.get("TEXTLAB_DEBUG"))
    _ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    clean = False
    try:
        command = build_app()
        _CHILDREN_SAID[0] = False
        rv = command.main(args=argv, prog_name="textlab", standalone_mode=False)
        clean = True
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        if code == 130 and not _CHILDREN_SAID[0]:  # typer turns Ctrl-C inside a command (eval, generate...) into 130
            error_line("interrupted")
        return code
    except Interrupted as exc:
        if (Path(exc.run_dir) / "checkpoints" / "last.pt").exists():
            error_line(f"interrupted; last.pt is saved. Resume with: textlab train --resume {exc.run_dir}")
        else:
            error_line(f"interrupted before the first checkpoint; nothing to resume in {exc.run_dir}: "
                       "run the command again")
        return 130
    except TextlabError as exc:
        if debug:
            traceback.print_exc()
        error_line(exc.line())
        return exc.exit_code
    except _click.exceptions.NoArgsIsHelpError as exc:
        text = exc.format_message()  # typer's rich help prints itself while the error is made (and is "")
        if text.strip():
            out.print(text, markup=False, highlight=False)
        return 0
    except _click.exceptions.ClickException as exc:
        if debug:
            traceback.print_exc()
        where = getattr(getattr(exc, "ctx", None), "command_path", "textlab")
        message = exc.format_message()
        if isinstance(exc, _click.exceptions.UsageError):
            message += f" (see '{where} --help')"
        error_line(message)
        return exc.exit_code
    except typer.Exit as exc:
        return getattr(exc, "exit_code", 0)
    except (typer.Abort, KeyboardInterrupt):
        error_line("aborted")
        return 130
    except OSError as exc:  # a full disk, a folder without write permission...: the system's own words
        if debug:
            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        hint = (" (make room; a run that stopped resumes with: textlab train --resume RUN)"
                if exc.errno == errno.ENOSPC else "")
        error_line(f"{exc.strerror or first_line(exc)}{where}{hint}")
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence: still one line
        if debug:
            traceback.print_exc()
            return 1
        error_line(f"internal error: {type(exc).__name__}: {first_line(exc)} (set TEXTLAB_DEBUG=1 for the traceback)")
        return 1
    finally:
        from . import distributed

        distributed.shutdown(clean)


def entry() -> None:
    code = main()
    from . import distributed

    if distributed.world_size() > 1:
        # Under torchrun, skip the interpreter's teardown: destructors of gloo's threads running at
        # exit occasionally abort the process ("terminate called without an active exception").
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

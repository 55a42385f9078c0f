"""The `textlab` command line: a thin adapter from words to invocations.

Each verb is a group whose commands are the tasks that support it; each command's options come
from the verb's options dataclass (`options.py`) and the core's (`invocation.TaskCore` and its
kinds). A command parses, makes an `Invocation` and executes it; everything else (runs, resumes,
sweeps, several processes) is in `invocation.py` and `runner.py`, which tests and notebooks call
without the command line. Artifact-first verbs (eval, neighbors, generate...) resolve their first
argument, a run directory or checkpoint, to the task that wrote it, then parse the rest of the line
with that task's options.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import inspect
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import typer
from typer.core import TyperGroup

from ._version import __version__
from . import options as O
from ._typer import ClickException, ClickUsageError, NoArgsIsHelpError, remaining_args
from .console import error_line, json_mode, out, set_json, status, warn
from .errors import PluginError, TextlabError, UsageError, first_line
from .runner import execute
from .invocation import Invocation, Verb, get_verb
from .plugins import registry

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
CORE_COMMANDS = {"plugins", "runs", "rerun", "diff", "report", "submit", "bundle"}


# ============================================================================ options -> typer parameters
def _annotation(spec: O.OptionSpec) -> tuple[Any, dict]:
    """The typer annotation of one option, and extra typer.Option arguments."""
    m, extra = spec.meta, {}
    if spec.choices:
        base: Any = Literal.__getitem__(tuple(spec.choices))  # type: ignore[attr-defined]
    elif spec.kind is O.Duration or m.gt is not None or m.lt is not None or m.parser is not None:
        base = str  # read by our own parser: durations, open bounds
        extra["parser"] = _parser(spec)
        extra["metavar"] = m.metavar or ("DURATION" if spec.kind is O.Duration else
                                         "FLOAT" if spec.kind is float else spec.kind.__name__.upper())
    elif spec.kind in (int, float, bool, Path, str):
        base = spec.kind
        if spec.kind in (int, float):
            extra.update({k: v for k, v in (("min", m.min), ("max", m.max)) if v is not None})
    else:
        base = str
    if spec.multiple:
        base = list[base]  # type: ignore[valid-type]
    if spec.optional or spec.multiple:
        base = Optional[base]
    if m.metavar and "metavar" not in extra:
        extra["metavar"] = m.metavar
    return base, extra


def _parser(spec: O.OptionSpec) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if spec.meta.note and isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
            warn(spec.meta.note)
        return O.coerce(spec, value)

    return parse


def _help(spec: O.OptionSpec) -> str:
    """The option's help as typer shows it (rich markup: brackets are escaped)."""
    from rich.markup import escape

    m = spec.meta
    text = m.help
    if spec.kind is O.Duration:
        text += "" if "90s" in text else " (90s, 20m, 1h30m, or seconds)"
    if (m.gt is not None or m.lt is not None or (spec.kind is O.Duration and m.min is not None)) and O.range_text(m):
        text += f" [{O.range_text(m)}]"
    if m.applies:
        text += " (" + "; ".join(f"--{k.replace('_', '-')} {' or '.join(map(str, v))} only" for k, v in m.applies.items()) + ")"
    return escape(text)


def _param(spec: O.OptionSpec) -> inspect.Parameter:
    ann, extra = _annotation(spec)
    m = spec.meta
    default = spec.default_value() if spec.default is not dataclasses.MISSING else ...
    if isinstance(default, list) and not default:
        default = None
    if m.argument:
        info = typer.Argument(help=_help(spec), **{k: v for k, v in extra.items() if k in ("parser", "metavar")})
    else:
        info = typer.Option(*m.flags, help=_help(spec), rich_help_panel=m.panel, hidden=m.hidden, **extra)
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY,
                             annotation=Annotated[ann, info], default=default)


def _old_param(spec: O.OptionSpec, old: str) -> inspect.Parameter:
    """A hidden option under an earlier spelling: refused with the new name."""
    def refuse(value: Any) -> Any:
        if value is not None:
            raise UsageError(f"{old} is now {spec.flag}" + (f" ({spec.meta.note})" if spec.meta.note else ""),
                             hint=f"use {spec.flag}")
        return value

    name = "old_" + old.lstrip("-").replace("-", "_")
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[str], typer.Option(old, hidden=True, callback=refuse)])


def make_command(verb: Verb) -> Callable[..., Any]:
    """The typer callback of `textlab VERB TASK`: parse, make the invocation, execute, print."""
    specs = verb.specs() + O.specs_of(verb.core)
    params = [inspect.Parameter("textlab_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
    params += [_param(s) for s in specs]
    olds = [_old_param(s, o) for s in specs for o in s.meta.old]
    params += olds
    old_names = {p.name for p in olds}

    def callback(**kwargs: Any) -> Any:
        ctx = kwargs.pop("textlab_ctx")
        for name in old_names:
            kwargs.pop(name, None)
        values = {k: (v.value if isinstance(v, enum.Enum) else ([] if v is None and _is_list(specs, k) else v))
                  for k, v in kwargs.items()}
        given = {k for k in values if ctx.get_parameter_source(k).name == "COMMANDLINE"}
        inv = Invocation.from_cli(verb, values, given, ctx.meta.get("textlab.target"))
        result = execute(inv, ctx.meta.get("textlab.artifact"))
        emit(result)
        return result

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__name__ = f"{verb.name}_{verb.task.name}"
    callback.__doc__ = inspect.getdoc(verb.func) or verb.task.help
    return callback


def _is_list(specs: list[O.OptionSpec], name: str) -> bool:
    return any(s.name == name and s.multiple for s in specs)


def emit(result: Any) -> None:
    from . import distributed

    if isinstance(result, dict) and result.get("_relaunched"):
        return  # `--nproc N`: the processes printed (rank 0 alone); the launcher prints nothing more
    if json_mode() and distributed.is_main() and result is not None:
        out.print_json(json.dumps(jsonable(result), ensure_ascii=False), ensure_ascii=False)


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
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

        return jsonable(dataclasses.asdict(obj))
    return str(obj)


# ============================================================================ shell completion
def complete_runs(incomplete: str) -> list[str]:
    """Run directories (as paths) for `textlab --install-completion`: eval RUN, train --resume RUN..."""
    from .rundir import runs_root

    root = runs_root()
    found = [str(p.parent) for p in sorted(root.glob("*/*/run.json"))] if root.is_dir() else []
    return [p for p in found if p.startswith(incomplete)] or [p for p in found if incomplete in p]


def complete_tasks(incomplete: str) -> list[str]:
    return [t for t in sorted(registry().tasks) if t.startswith(incomplete)]


# ============================================================================ verb groups
class VerbGroup(TyperGroup):
    """A verb: its commands are tasks. Unknown or unsupported tasks get one clear line."""

    verb = ""
    kind = "task"

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        """Task names, options, and for verbs that read a run (eval, generate...) run directories."""
        from ._typer import CompletionItem

        items = list(super().shell_complete(ctx, incomplete))
        if self.kind == "artifact" or self.verb == "analyze":
            items += [CompletionItem(p) for p in complete_runs(incomplete)]
        return items

    def format_commands(self, ctx: Any, formatter: Any) -> None:  # plain help: call them tasks
        rows = [(n, c.get_short_help_str(60)) for n, c in self.commands.items()]
        if rows:
            with formatter.section("Tasks"):
                formatter.write_dl(rows)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        first = args[0]
        if self.kind == "artifact":
            return self._artifact_target(ctx, args)
        if self.verb == "train" and (ctx.params.get("resume") or ctx.params.get("config")) and \
                (first.startswith("-") or first not in self.commands):
            return self._task_from_file(ctx, args)
        if first in self.commands:
            return first, self.commands[first], args[1:]
        if self.verb == "analyze" and not first.startswith("-"):
            return "RUN", _compare_command(), args
        if first.startswith("-"):
            return super().resolve_command(ctx, args)
        registry().task(first, self.verb)  # raises "unknown task" or "does not support"
        return super().resolve_command(ctx, args)

    def _artifact_target(self, ctx: Any, args: list[str]) -> tuple[str, Any, list[str]]:
        from .checkpoint import open_artifact

        first = args[0]
        if first in self.commands and any(a in ("--help", "-h") for a in args[1:]) and not Path(first).exists():
            return first, self.commands[first], args[1:]  # `textlab eval TASK --help`: that task's options
        which = "last" if "--checkpoint=last" in args or _after(args, "--checkpoint") == "last" else "best"
        artifact = open_artifact(first, which=which, make_one=self._quickstart(first))
        registry().task(artifact.task, self.verb)
        ctx.meta["textlab.artifact"] = artifact
        ctx.meta["textlab.target"] = first
        return first, self.commands[artifact.task], args[1:]

    def _quickstart(self, target: str) -> str | None:
        """How to make a run that `target` (which does not exist) could have been: the quickstart of the
        only task with this verb, or of the task the path names (runs/gla/...)."""
        tasks = [t for t in registry().tasks_for(self.verb) if t.quickstart]
        named = [t for t in tasks if t.name in Path(str(target)).parts or t.name in Path(str(target)).name]
        chosen = named if len(named) == 1 else tasks
        return chosen[0].quickstart if len(chosen) == 1 else None

    def _task_from_file(self, ctx: Any, args: list[str]) -> tuple[str, Any, list[str]]:
        """`textlab train --resume RUN [options]` / `textlab train --config FILE`: the task comes from
        the run's run.json or the file's `task` key."""
        from .data import read_json
        from .rundir import locate_run

        lead: list[str] = []
        if ctx.params.get("config"):
            path = Path(ctx.params["config"])
            task = str(O.read_config_file(path).get("task") or "")
            if not task and not ctx.params.get("resume"):
                raise UsageError(f"--config {path} does not name its task", hint="textlab train TASK --config FILE")
            lead += ["--config", str(path)]
        if ctx.params.get("resume"):
            run_dir = locate_run(ctx.params["resume"])
            task = str(read_json(run_dir / "run.json", "run.json").get("task"))
            lead += ["--resume", str(run_dir)]
        registry().task(task, "train")
        rest = args[1:] if args and args[0] == task else list(args)
        return task, self.commands[task], [*lead, *rest]


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
        runs: Annotated[list[str], typer.Argument(help="Run directories (or folders of runs, or run names).",
                                                  autocompletion=complete_runs)],
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="A folder for the comparison (PNG curves, comparison.json); "
                                                                      "default: a new one under the runs root's _compare/.")] = None,
        x: Annotated[Literal["auto", "step", "epoch", "time"], typer.Option(help="x axis of the curves.")] = "auto",
        json_output: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    ) -> Any:
        """Compare runs: best and last value of each metric per split, and PNG learning curves."""
        from .compare import compare_runs
        from .rundir import iter_run_dirs

        set_json(json_output)
        dirs = list(dict.fromkeys(iter_run_dirs(runs)))
        result = compare_runs(dirs, out_dir, x=x)
        emit(result)
        return result

    return typer.main.get_command(app)


# ============================================================================ parsing without running
def parse_invocation(words: list[str]) -> Invocation:
    """`["train", "agnews", "--rnn", "lstm"]` -> its Invocation, checked, not run (submit, bundle)."""
    app = build_app()
    if not words or words[0] not in getattr(app, "commands", {}):
        raise UsageError(f"expected a textlab verb, got {' '.join(words[:1]) or 'nothing'}")
    group = app.commands[words[0]]
    with group.make_context(words[0], list(words[1:]), resilient_parsing=False) as gctx:
        name, command, rest = group.resolve_command(gctx, remaining_args(gctx))
        captured: dict[str, Any] = {}
        with command.make_context(name, list(rest), parent=gctx) as ctx:
            params = dict(ctx.params)
            given = {k for k in params if ctx.get_parameter_source(k).name == "COMMANDLINE"}
            captured["ctx"] = ctx
    verb = get_verb(gctx.meta.get("textlab.artifact").task if gctx.meta.get("textlab.artifact") else name, words[0])
    values = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in params.items() if not k.startswith("old_")}
    values = {k: ([] if v is None and _is_list(verb.specs() + O.specs_of(verb.core), k) else v) for k, v in values.items()}
    return Invocation.from_cli(verb, values, given, gctx.meta.get("textlab.target"))


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
    status_: Annotated[Optional[list[str]], typer.Option("--status", help="Only runs with this status (repeatable): "
                                                         "finished, running, failed, interrupted, stale, queued.")] = None,
    prune: Annotated[bool, typer.Option(help="Delete failed and stale runs (asks first; --yes to skip the question).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --prune: delete without asking.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List runs: task, model, status, best metric, age."""
    from .runs import STATUSES_SHOWN, list_runs, prune_runs, runs_root, runs_table
    from .slurm import annotate

    wanted = set(status_ or [])
    unknown = sorted(wanted - set(STATUSES_SHOWN))
    if unknown:
        raise UsageError(f"--status {unknown[0]!r} is not a run status", hint="one of: " + ", ".join(STATUSES_SHOWN))
    if yes and not prune:
        raise UsageError("--yes confirms --prune; give --prune too")
    rows = list_runs(runs_dir, task)
    annotate(rows)
    if prune:
        rows = prune_runs(rows, wanted, yes)
    elif wanted:
        rows = [r for r in rows if str(r.get("status", "")).split()[0].rstrip("?") in wanted]
    if json_output:
        out.print_json(json.dumps(rows, default=str))
        return
    if not rows:
        status(f"no runs under {runs_root(runs_dir)}" + (" with that status" if wanted else ""))
        return
    out.print(runs_table(rows, ("pruned from " if prune else "runs under ") + str(runs_root(runs_dir))))


def _rerun_command(
    run: Annotated[str, typer.Argument(help="The run to repeat (a run directory or its name).", autocompletion=complete_runs)],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE: change one option (repeatable).")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option(help="Root of run directories (env TEXTLAB_RUNS, else ./runs).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Suffix for the new run directory's name.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Start a new run with a past run's resolved options, changed where told (--set KEY=VALUE)."""
    from .runner import rerun
    from .rundir import locate_run

    changes = {}
    for item in set_ or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--set {item!r} must look like KEY=VALUE")
        changes[O.normalize_key(key)] = value
    core: dict[str, Any] = {"json_output": json_output}
    if runs_dir is not None:
        core["runs_dir"] = runs_dir
    if name is not None:
        core["name"] = name
    emit(rerun(locate_run(run), changes, core))


def _diff_command(
    run_a: Annotated[str, typer.Argument(help="A run directory (or its name).", autocompletion=complete_runs)],
    run_b: Annotated[str, typer.Argument(help="Another run directory.", autocompletion=complete_runs)],
    json_output: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """What differs between two runs: options, resolved settings, data, seed, versions, metrics."""
    from .compare import diff_runs, diff_table
    from .rundir import locate_run

    a, b = locate_run(run_a), locate_run(run_b)
    rows = diff_runs(a, b)
    if json_output:
        out.print_json(json.dumps({"a": str(a), "b": str(b), "rows": rows}, default=str, ensure_ascii=False),
                       ensure_ascii=False)
    else:
        out.print(diff_table(rows, a, b))


def _report_command(
    runs: Annotated[list[str], typer.Argument(help="Run directories (or folders of runs, or run names).",
                                              autocompletion=complete_runs)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    title: Annotated[Optional[str], typer.Option(help="The report's title.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """One self-contained HTML file (images inline, no server, no network): learning curves, the
    options that differ, eval tables and the plots the runs made."""
    from .report import make_report
    from .rundir import iter_run_dirs

    set_json(json_output)
    if output.is_dir():
        raise UsageError(f"-o {output} is a folder; give a file name such as report.html")
    if output.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o {output}: the report is HTML; give a name ending in .html")
    dirs = list(dict.fromkeys(iter_run_dirs(runs)))
    result = make_report(dirs, output, title)
    if json_output:
        emit(result)
    else:
        status(f"wrote {output} ({result['bytes'] / 1024:,.0f} KiB, {len(dirs)} run(s))")


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
    words = list(args)
    if not words:
        raise UsageError("nothing to submit", hint="textlab submit [options] -- train TASK [options]")
    if words[0] != "train":
        raise UsageError(f"submit runs training jobs: expected 'train ...' after --, got {words[0]!r}")
    inv = parse_invocation(words)
    result = submit(inv, words, partition=partition, time=time, nodes=nodes, gpus=gpus, cpus=cpus, mem=mem,
                    account=account, qos=qos, nproc=nproc, grace=grace, home=str(home) if home else None,
                    runs_dir=str(runs_dir) if runs_dir else None, python=python, extra=sbatch, offline=not online,
                    dry_run=dry_run)
    if json_output:
        emit(result)
    elif dry_run:
        out.print(result["text"], markup=False, highlight=False)
        status(f"dry run: nothing written or submitted (the script would be {result['script']})")
    else:
        out.print(f"submitted job {result['job_id']}: run directory {result['run_dir']}", markup=False, highlight=False)


def _bundle_command(
    task: Annotated[str, typer.Option(help="The task the offline node will run.", autocompletion=complete_tasks)],
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
    from .bundle import make_bundle, split_prep_args

    set_json(json_output)
    registry().task(task)
    per_verb = split_prep_args(task, list(options or []))  # every option checked before anything is written

    def prepare(verb: str, data_name: str) -> Invocation:
        words = [verb, task] + (["--data", data_name] if "--data" in per_verb[verb][1] else []) + per_verb[verb][0]
        return parse_invocation(words)

    # a prep verb that reads no --data (ai4code's prep converts .ipynb files) has nothing to prepare here
    result = make_bundle(task, list(data or []), out_dir, include=list(include or []), wheels=wheels,
                         prep_verbs=[v for v in per_verb if "--data" in per_verb[v][1]], prepare=prepare)
    if json_output:
        emit(result)
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
        add_completion=True,  # --install-completion: tasks, run directories and option names complete
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
            v = get_verb(task, verb)
            if v.kind != kind:
                raise PluginError(f"task {task.name!r}: verb {verb!r} has kind {v.kind!r}, another task gives it kind {kind!r}")
            sub.command(task.name, help=inspect.getdoc(v.func) or task.help, rich_help_panel="Tasks",
                        short_help=task.help)(make_command(v))
        if verb == "train":
            _add_train_options(sub)
        app.add_typer(sub, name=verb)
    app.command("plugins")(_plugins_command)
    app.command("runs")(_runs_command)
    app.command("rerun")(_rerun_command)
    app.command("diff")(_diff_command)
    app.command("report")(_report_command)
    app.command("submit")(_submit_command)
    app.command("bundle")(_bundle_command)
    return typer.main.get_command(app)


def _add_train_options(sub: typer.Typer) -> None:
    @sub.callback(invoke_without_command=True, context_settings={"ignore_unknown_options": True})
    def train_group(
        ctx: typer.Context,
        resume: Annotated[Optional[Path], typer.Option(help="Resume this run directory (its task is read from run.json); "
                                                            "options after it override the stored ones.",
                                                       autocompletion=complete_runs)] = None,
        config: Annotated[Optional[Path], typer.Option(help="Options from this TOML/YAML file; its `task` key names "
                                                            "the task when none is given.")] = None,
    ) -> None:
        if ctx.invoked_subcommand is None:
            if resume is None and config is None:
                out.print(ctx.get_help())
                raise typer.Exit(0)
            cmd_name, command, args = ctx.command._task_from_file(ctx, [])
            with command.make_context(cmd_name, args, parent=ctx) as sub_ctx:
                command.invoke(sub_ctx)


# ============================================================================ entry point
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. Every user error is one line on stderr."""
    from .runner import ChildrenFailed, Interrupted  # noqa: F811

    debug = bool(os.environ.get("TEXTLAB_DEBUG"))
    clean = False
    try:
        command = build_app()
        rv = command.main(args=argv, prog_name="textlab", standalone_mode=False)
        clean = True
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        if code == 130:  # typer turns Ctrl-C inside a command (eval, generate...) into 130
            error_line("interrupted")
        return code
    except Interrupted as exc:
        if (Path(exc.run_dir) / "checkpoints" / "last.pt").exists():
            error_line(f"interrupted; last.pt is saved. Resume with: textlab train --resume {exc.run_dir}")
        else:
            error_line(f"interrupted before the first checkpoint; nothing to resume in {exc.run_dir}: "
                       "run the command again")
        return 130
    except ChildrenFailed as exc:
        return exc.code  # the processes printed their own line
    except TextlabError as exc:
        if debug:
            traceback.print_exc()
        error_line(exc.line())
        return exc.exit_code
    except NoArgsIsHelpError as exc:
        text = exc.format_message()  # typer's rich help prints itself while the error is made (and is "")
        if text.strip():
            out.print(text, markup=False, highlight=False)
        return 0
    except ClickException as exc:
        if debug:
            traceback.print_exc()
        where = getattr(getattr(exc, "ctx", None), "command_path", "textlab")
        message = exc.format_message()
        if isinstance(exc, ClickUsageError):
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
    # The interpreter's teardown collects every object torch and its friends made (0.3-0.8 s of
    # every command); frozen objects are skipped, and destructors and atexit handlers still run.
    import gc

    gc.freeze()
    sys.exit(code)

"""The core's pieces from Python: options declared once, the invocation, the engine's schedules,
precision and compile, callbacks."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import pytest
import torch

import textlab
from textlab import options as O


# ============================================================================ options
@dataclass
class Opts(textlab.Options):
    model: str = textlab.option("a", help="Which.")
    size: int = textlab.option(4, min=1, help="A size.", applies={"model": ("a",)})
    share: float = textlab.option(0.5, gt=0, lt=1, help="A share.")
    kind: Literal["x", "y"] = textlab.option("x", help="A kind.")
    budget: Optional[float] = O.time_budget()
    tags: list[str] = textlab.option([], help="Tags.")
    flag: bool = textlab.option(False, help="A flag.")


def test_one_check_for_every_source_of_a_value():
    specs = O.spec_map(Opts)
    assert O.coerce(specs["size"], "12") == 12 and O.coerce(specs["size"], 12) == 12
    assert O.coerce(specs["budget"], "1h30m") == 5400 and O.coerce(specs["budget"], "1e-3") == 0.001
    assert O.coerce(specs["budget"], "0") is None  # no limit
    assert O.coerce(specs["flag"], "yes") is True and O.coerce(specs["tags"], "a") == ["a"]
    for spec, value, words in ((specs["size"], "0", "range x>=1"), (specs["size"], 1.5, "not an integer"),
                               (specs["share"], "1", "0<x<1"), (specs["share"], "inf", "not a finite number"),
                               (specs["share"], "nan", "nan"), (specs["kind"], "z", "not one of x, y"),
                               (specs["budget"], "soon", "cannot read the duration"),
                               (specs["flag"], "maybe", "true or false")):
        with pytest.raises(textlab.UsageError, match=words.replace("(", r"\(")):
            O.coerce(spec, value)
    with pytest.raises(textlab.UsageError) as info:
        O.make(Opts, {"sise": 3})
    assert "unknown option 'sise'" in info.value.line() and "did you mean size" in info.value.line()


def test_an_option_given_for_another_model_is_refused():
    opts = O.make(Opts, {"model": "b", "size": 5})
    with pytest.raises(textlab.UsageError, match="--size applies to --model a, not --model b"):
        O.check_applies(Opts, opts, {"size"})
    O.check_applies(Opts, opts, set())  # a default that does not apply says nothing


def test_toml_round_trip_of_awkward_values():
    tables = {"task": "t", "options": {"text": 'a "quoted"\nline\\ ё', "x": 1.0, "big": 1e300, "n": 3, "on": True,
                                       "list": ["a", "b"], "none": None}}
    back = tomllib.loads(O.dump_toml(tables, "a header\nof two lines"))
    assert back["options"] == {k: v for k, v in tables["options"].items() if v is not None}


def test_durations():
    assert O.Duration.parse("90s") == 90 and O.Duration.parse("20m") == 1200 and O.Duration.parse("1.5h") == 5400
    assert O.format_duration(5400) == "1h30m" and O.format_duration(2.5) == "2.5s"
    for bad in ("abc", "10x", "1h30", "-5m"):
        with pytest.raises(ValueError):
            O.Duration.parse(bad)


# ============================================================================ the invocation, from Python
def test_an_invocation_from_python_resolves_prints_and_runs(tmp_path):
    inv = textlab.Invocation.make("gla", "train", {"data": "sample", "d_model": 32, "layers": 1, "heads": 2,
                                                   "seq_len": 32, "batch_size": 4, "steps": 3, "eval_every": 3,
                                                   "eval_chars": 500}, {"seed": 4, "threads": 1})
    text = inv.resolved().config_toml()
    stored = tomllib.loads(text)
    assert stored["options"]["epochs"] is None if "epochs" in stored["options"] else True
    assert stored["options"]["d_model"] == 32 and stored["core"]["seed"] == 4
    assert inv.to_argv()[:2] == ["train", "gla"] and "--d-model" in inv.to_argv()
    result = textlab.execute(inv)
    run = Path(result["run"])
    assert result["status"] == "finished" and tomllib.loads((run / "config.toml").read_text())["options"]["steps"] == 3
    again = textlab.Invocation.from_record(run, {"steps": "5"})
    assert again.options.steps == 5 and again.options.d_model == 32 and again.parent == str(run.resolve())
    with pytest.raises(textlab.UsageError, match="unknown option 'lyers'"):
        textlab.Invocation.make("gla", "train", {"lyers": 2})


# ============================================================================ schedules
def test_schedules_warm_up_then_follow_their_shape():
    cos = textlab.Schedule("cosine", warmup=10, min_ratio=0.1)
    assert cos.factor(0, 0.0) == pytest.approx(0.1) and cos.factor(9, 0.0) == pytest.approx(1.0)
    assert cos.factor(50, 0.5) == pytest.approx(0.55) and cos.factor(99, 1.0) == pytest.approx(0.1)
    lin = textlab.Schedule("linear", warmup=0, min_ratio=0.2)
    assert lin.factor(10, 0.5) == pytest.approx(0.6) and lin.factor(10, 1.0) == pytest.approx(0.2)
    rs = textlab.Schedule("rsqrt", warmup=4)
    assert rs.factor(3, 0.0) == pytest.approx(1.0) and rs.factor(15, 0.0) == pytest.approx(0.5)
    assert textlab.Schedule("constant", warmup=4).factor(100, 1.0) == 1.0


def test_adamw_decays_matrices_only():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    groups = textlab.adamw(net, 1e-3, 0.1).param_groups
    assert [len(g["params"]) for g in groups] == [1, 3] and [g["weight_decay"] for g in groups] == [0.1, 0.0]


# ============================================================================ precision, compile, callbacks
def _weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state_dict"]


@pytest.mark.parametrize("extra", [["--precision", "bf16"], ["--precision", "fp16"], ["--compile"]])
def test_precision_and_compile_train_and_resume_exactly(cli, toy, tmp_path, extra):
    straight = cli("train", "toy", "--steps", "24", "--eval-every", "6", "--name", "straight", *extra, "--json")
    assert straight.code == 0, straight.err
    part = cli("train", "toy", "--steps", "12", "--eval-every", "6", "--name", "part", *extra, "--json")
    assert part.code == 0, part.err
    runs = {p.name.split("-")[-1]: p for p in (tmp_path / "runs" / "toy").iterdir()}
    res = cli("train", "--resume", runs["part"], "--steps", "24")
    assert res.code == 0, res.err
    a, b = _weights(runs["straight"]), _weights(runs["part"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = tomllib.loads((runs["part"] / "config.toml").read_text())["core"]
    assert config["precision"] == (extra[1] if extra[0] == "--precision" else "fp32")
    assert config["compile"] == (extra == ["--compile"])
    flip = ["--precision", "fp32"] if extra[0] == "--precision" else ["--no-compile"]
    res = cli("train", "--resume", runs["part"], "--steps", "30", *flip)
    assert res.code == 2 and "a resume keeps the run's" in res.err


@pytest.mark.parametrize("task", [["agnews", "--model", "bow", "--steps", "4"], ["agnews", "--model", "rnn", "--steps", "4"],
                                  ["gla", "--steps", "4"], ["recrnn", "--steps", "4"],
                                  ["ai4code", "--model", "neural", "--epochs", "1"]])
def test_every_gradient_step_task_trains_under_bf16_and_records_it(cli, tmp_path, task):
    # each plugin's own operators meet autocast here (gla's chunk form once failed under it)
    res = cli("train", task[0], "--data", "sample", *task[1:], "--precision", "bf16", "--threads", "1", "--json")
    assert res.code == 0, res.err
    run = Path(json.loads(res.out)["run"])
    assert tomllib.loads((run / "config.toml").read_text())["core"]["precision"] == "bf16"
    weights = _weights(run)
    assert weights and all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_precision_is_refused_for_a_task_with_its_own_loop(cli):
    res = cli("train", "word2vec", "--data", "sample", "--precision", "bf16")
    assert res.code == 2 and len(res.err_lines) == 1 and "loop of its own" in res.err


class Counter(textlab.Callback):
    name = "counter"

    def __init__(self):
        self.steps = 0
        self.evals: list[bool] = []

    def after_step(self, engine, out):
        self.steps += 1

    def on_eval(self, engine, metrics, scheduled):
        self.evals.append(scheduled)
        metrics["counted"] = float(self.steps)

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def _fit(tmp_path: Path, steps: int, resume: Path | None = None) -> tuple[Counter, Path]:
    from textlab.runs import Run

    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    net = torch.nn.Linear(3, 2)
    run = Run.open(resume, resume=True) if resume else Run.create("toy", "lin", {}, runs_dir=str(tmp_path))
    counter = Counter()
    with run:
        textlab.Engine(run, net, torch.optim.SGD(net.parameters(), lr=0.1), batches=None,
                       step=lambda m, i: {"loss": torch.nn.functional.cross_entropy(m(x[i % 4::4]), y[i % 4::4])},
                       evaluate=lambda m: {"loss": torch.nn.functional.cross_entropy(m(x), y)},
                       meta={"model": "lin"}, steps=steps, eval_every=4, callbacks=[counter],
                       monitor="valid/loss").fit()
    return counter, run.dir


def test_callbacks_keep_their_state_across_a_resume(tmp_path):
    counter, run = _fit(tmp_path, 10)
    assert counter.steps == 10 and counter.evals == [True, True, False]  # the stop at step 10 is not on schedule
    resumed, _ = _fit(tmp_path, 16, resume=run)
    assert resumed.steps == 16  # 10 from last.pt + 6 new ones
    logged = [r for r in textlab.read_metrics(run) if r["name"] == "counted"]
    assert [r["value"] for r in logged][-1] == 16.0


# ============================================================================ save_every: checkpoints less often than evaluations
class BestWatcher(textlab.Callback):
    """Copies the weights at every evaluation that improves the valid loss (what best.pt must hold)."""

    def __init__(self):
        self.best, self.weights, self.step = math.inf, None, None

    def on_eval(self, engine, metrics, scheduled):
        if metrics["loss"] < self.best:
            self.best, self.step = metrics["loss"], engine.state.step
            self.weights = {k: v.clone() for k, v in engine.model.state_dict().items()}


def _fit_saving(tmp_path: Path, steps: int, save_every: float | None, resume: Path | None = None, writes=None):
    from textlab.runs import Run

    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    net = torch.nn.Linear(3, 2)
    run = Run.open(resume, resume=True) if resume else Run.create("toy", "lin", {}, runs_dir=str(tmp_path))
    if writes is not None:
        real = run.save_checkpoint
        run.save_checkpoint = lambda which, **kw: (writes.append((which, kw["extra"]["step"])), real(which, **kw))[1]
    watcher = BestWatcher()
    with run:
        textlab.Engine(run, net, torch.optim.SGD(net.parameters(), lr=0.5), batches=None,
                       step=lambda m, i: {"loss": torch.nn.functional.cross_entropy(m(x[i % 4::4]), y[i % 4::4])},
                       evaluate=lambda m: {"loss": torch.nn.functional.cross_entropy(m(x), y)},
                       meta={"model": "lin"}, steps=steps, eval_every=2, callbacks=[watcher],
                       monitor="valid/loss", save_every=save_every).fit()
    return watcher, run.dir


def test_save_every_writes_best_and_last_together_when_the_run_stops(tmp_path):
    writes = []
    watcher, run = _fit_saving(tmp_path, 12, save_every=3600, writes=writes)
    assert writes == [("best", watcher.step), ("last", 12)]  # 6 evaluations, one write of each at the end
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["extra"]["step"] == watcher.step and watcher.step < 12  # the loss is noisy: an earlier step is best
    assert all(torch.equal(best["state_dict"][k], watcher.weights[k]) for k in watcher.weights)
    assert json.loads((run / "run.json").read_text())["best"]["step"] == watcher.step
    every = []
    _fit_saving(tmp_path, 12, save_every=None, writes=every)  # the default: last.pt at every evaluation
    assert [w for w in every if w[0] == "last"] == [("last", s) for s in (2, 4, 6, 8, 10, 12)]


def test_save_every_resumes_exactly(tmp_path):
    _, straight = _fit_saving(tmp_path, 12, save_every=3600)
    _, part = _fit_saving(tmp_path, 7, save_every=3600)
    _fit_saving(tmp_path, 12, save_every=3600, resume=part)
    a, b = _weights(straight), _weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_found_wherever_they_are(bad):
    from textlab.engine import check_finite

    net = torch.nn.Sequential(torch.nn.Linear(300, 300), torch.nn.Linear(300, 0))  # an empty tensor is fine
    check_finite(net, 1)
    for where in (0, 45_017, 89_999):
        with torch.no_grad():
            net[0].weight.view(-1)[where] = bad
        with pytest.raises(textlab.TextlabError, match="non-finite"):
            check_finite(net, 1)
        with torch.no_grad():
            net[0].weight.view(-1)[where] = 0.0

"""Shared fixtures: isolated TEXTLAB_HOME / runs, an in-process CLI runner, the toy plugin.

Every test gets its own cache folder and runs folder (and works in a temporary directory), so
tests never touch the user's cache and can run in any order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("COLUMNS", "200")  # rich tables unwrapped in captured output
os.environ["TEXTLAB_PROGRESS"] = "0"  # no progress bars in test output
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
TOY_SRC = REPO / "tests" / "plugins" / "textlab_toy"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    home = tmp_path / "home"
    runs = tmp_path / "runs"
    monkeypatch.setenv("TEXTLAB_HOME", str(home))
    monkeypatch.setenv("TEXTLAB_RUNS", str(runs))
    monkeypatch.chdir(tmp_path)
    from textlab import console

    console.set_json(False)
    yield


@pytest.fixture
def cli(capsys):
    """Run `textlab ARGS...` in this process; returns Result(code, out, err)."""
    from textlab.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_config(run: Path) -> dict:
    """A run's stored options (config.toml) as one flat dict: the task's options and the core's."""
    import tomllib

    data = tomllib.loads((Path(run) / "config.toml").read_text(encoding="utf-8"))
    return {**data.get("options", {}), **data.get("core", {})}


def plain(obj) -> bool:
    """Only tensors and plain values (what weights_only loading allows and our checkpoints promise)."""
    import torch

    if isinstance(obj, dict):
        return all(isinstance(k, str) and plain(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(plain(v) for v in obj)
    return obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor))


def subprocess_env(extra_path: Path | None = None, **env: str) -> dict:
    e = dict(os.environ)
    e.update(env)
    if extra_path is not None:
        e["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra_path), e.get("PYTHONPATH")) if p)
    return e


def run_textlab(args: list[str], env: dict | None = None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`python -m textlab ARGS` in a child process."""
    return subprocess.run([sys.executable, "-m", "textlab", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def toy_site(tmp_path_factory) -> Path:
    """The toy plugin installed for real (pip, with its entry point) into a folder of its own."""
    target = tmp_path_factory.mktemp("toy-site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(TOY_SRC)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(target.glob("textlab_toy-*.dist-info/entry_points.txt")), "pip did not install the entry point"
    return target


@pytest.fixture
def toy(toy_site, monkeypatch):
    """Make the installed toy plugin discoverable in this process (entry points via sys.path)."""
    from textlab import plugins

    monkeypatch.syspath_prepend(str(toy_site))
    plugins.reset()
    yield toy_site
    sys.modules.pop("textlab_toy", None)
    plugins.reset()


@pytest.fixture
def toy_env(toy_site) -> dict:
    """Environment for child processes that should see the toy plugin."""
    return subprocess_env(toy_site)

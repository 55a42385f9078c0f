"""Every built-in task's eval function called from Python, without the command line: the
`Artifact` a verb receives declares all it reads (its device included)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

import textlab

FIXTURES = Path(__file__).parent / "fixtures" / "runs-0.1.0" / "runs"
RUNS = {
    "gla": "gla/20261207-021630-gla",
    "agnews": "agnews/20261207-021633-gru",
    "recrnn": "recrnn/20261207-021707-recurrent-single",
    "ai4code": "ai4code/20261207-021710-pointwise",
    "word2vec": "word2vec/20261207-021648-sgns-16d",
}


def _options(task: str, tmp_path: Path):
    """The eval verb's options dataclass, as a script would fill it."""
    from textlab.invocation import get_verb

    cls = get_verb(task, "eval").options
    if task == "word2vec":  # its eval needs something to evaluate: a word-pair file
        pairs = tmp_path / "pairs.tsv"
        pairs.write_text("москва петербург 9.0\nкот пёс 7.5\nмосква кот 1.0\n", encoding="utf-8")
        return cls(similarity=[pairs])
    if task == "recrnn":
        opts = cls(steps="1,2")
        opts.resolve()
        return opts
    return cls()


@pytest.mark.parametrize("task", sorted(RUNS))
def test_each_tasks_eval_from_python(task, tmp_path):
    run = tmp_path / "runs" / RUNS[task]
    shutil.copytree(FIXTURES / RUNS[task], run)
    artifact = textlab.open_artifact(run)
    assert artifact.device == "cpu" and artifact.run_dir == run  # declared: a plain call needs no CLI
    evaluate = textlab.registry().task(task).verbs["eval"]
    opts = _options(task, tmp_path)
    assert dataclasses.is_dataclass(opts)
    result = evaluate(artifact, opts)
    assert isinstance(result, dict) and result
    assert any((run / "eval").rglob("*.json"))  # it wrote its results into the run's eval/ folder


def test_an_invocation_runs_an_artifact_verb(tmp_path):
    run = tmp_path / "runs" / RUNS["gla"]
    shutil.copytree(FIXTURES / RUNS["gla"], run)
    inv = textlab.Invocation.make("gla", "eval", {"split": "valid", "max_chars": 500}, {"threads": 1}, target=str(run))
    result = textlab.execute(inv)
    assert set(result["splits"]) == {"valid"} and result["splits"]["valid"]["chars"] == 500

"""The plugin manager: entry points, failures that do not take the CLI down, conflicts."""

from __future__ import annotations

import json
import sys
import textwrap
from importlib import metadata

import pytest

from textlab import plugins
from textlab.errors import PluginError, UsageError


def write_module(tmp_path, name: str, body: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))


TASK_PLUGIN = """
    import textlab

    def train(run, *, steps: int = 1) -> dict:
        return {{"steps": steps}}

    @textlab.hookimpl
    def textlab_tasks():
        return [textlab.TaskSpec(name={task!r}, help="a test task", verbs={{"train": train}})]
"""


@pytest.fixture
def mods(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def make(name: str, body: str):
        write_module(tmp_path, name, body)
        created.append(name)
        return metadata.EntryPoint(name=name, value=name, group=plugins.ENTRY_POINT_GROUP)

    yield make
    for name in created:
        sys.modules.pop(name, None)


def test_core_registers_its_metrics_and_loggers():
    reg = plugins.Registry().load(entry_points=[])
    assert [p.name for p in reg.plugins] == ["textlab"]
    assert reg.metric("accuracy").higher_is_better and not reg.metric("valid/loss").higher_is_better
    assert set(reg.loggers) >= {"csv", "tensorboard"}


def test_two_plugins_registering_one_task_fail_naming_both(mods):
    a = mods("plug_a", TASK_PLUGIN.format(task="same"))
    b = mods("plug_b", TASK_PLUGIN.format(task="same"))
    with pytest.raises(PluginError) as err:
        plugins.Registry().load(entry_points=[a, b])
    assert "'plug_a'" in err.value.line() and "'plug_b'" in err.value.line() and "'same'" in err.value.line()


def test_same_model_name_for_two_tasks_is_fine_but_not_twice_for_one(mods):
    body = """
        import dataclasses, textlab

        @dataclasses.dataclass
        class C:
            x: int = 1

        @textlab.hookimpl
        def textlab_models():
            return [textlab.ModelSpec(task={task!r}, name="m", config=C, build=lambda c, v: None)]
    """
    a = mods("mod_a", body.format(task="t1"))
    b = mods("mod_b", body.format(task="t2"))
    reg = plugins.Registry().load(entry_points=[a, b])
    assert set(reg.models) == {("t1", "m"), ("t2", "m")}
    c = mods("mod_c", body.format(task="t1"))
    with pytest.raises(PluginError, match="model 'm' of task 't1' is registered by two plugins"):
        plugins.Registry().load(entry_points=[a, c])


def test_broken_plugins_are_listed_and_skipped(mods):
    good = mods("good_plugin", TASK_PLUGIN.format(task="good"))
    broken_import = mods("broken_import", "import nonexistent_module_xyz\n")
    raising_hook = mods("raising_hook", """
        import textlab

        @textlab.hookimpl
        def textlab_tasks():
            raise RuntimeError("hook exploded")
    """)
    wrong_type = mods("wrong_type", """
        import textlab

        @textlab.hookimpl
        def textlab_tasks():
            return ["not a TaskSpec"]
    """)
    unknown_hook = mods("unknown_hook", """
        import textlab

        @textlab.hookimpl
        def textlab_nonsense():
            return []
    """)
    bad_verb = mods("bad_verb", """
        import textlab

        def train(steps: int = 1):   # a train verb must take `run` first
            return {}

        @textlab.hookimpl
        def textlab_tasks():
            return [textlab.TaskSpec(name="bad", help="", verbs={"train": train})]
    """)
    reg = plugins.Registry().load(entry_points=[good, broken_import, raising_hook, wrong_type, unknown_hook, bad_verb])
    status = {p.name: p.error for p in reg.plugins}
    assert status["good_plugin"] is None and "good" in reg.tasks
    assert "ModuleNotFoundError" in status["broken_import"]
    assert "hook exploded" in status["raising_hook"]
    assert "expected TaskSpec" in status["wrong_type"]
    assert "unknown hook 'textlab_nonsense'" in status["unknown_hook"]
    assert "must take run first parameter" in status["bad_verb"]
    assert "bad" not in reg.tasks


def test_allow_list(mods, monkeypatch):
    a = mods("allow_a", TASK_PLUGIN.format(task="ta"))
    b = mods("allow_b", TASK_PLUGIN.format(task="tb"))
    monkeypatch.setenv("TEXTLAB_PLUGINS", "allow_b")
    reg = plugins.Registry().load(entry_points=[a, b])
    assert set(reg.tasks) == {"tb"}
    monkeypatch.setenv("TEXTLAB_PLUGINS", "allow_b,alow_a")  # a typo is said, not silently skipped
    with pytest.raises(PluginError, match="names 'alow_a', not an installed plugin"):
        plugins.Registry().load(entry_points=[a, b])


def test_broken_plugin_does_not_take_the_cli_down(cli, toy, tmp_path, monkeypatch):
    """A real installed distribution whose module fails to import: listed, and toy still works."""
    site = tmp_path / "site"
    dist = site / "broken_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[textlab.plugins]\nbroken = broken_plugin_mod\n")
    (site / "broken_plugin_mod.py").write_text("raise ImportError('missing dependency: libfoo')\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    res = cli("plugins", "--json")
    info = {p["name"]: p for p in json.loads(res.out)}
    assert info["broken"]["status"] == "failed" and "libfoo" in info["broken"]["error"]
    assert info["broken"]["version"] == "1.0"
    assert info["toy"]["status"] == "ok"
    assert cli("train", "toy", "--steps", "5").code == 0


def test_conflict_on_the_cli_is_one_line(cli, toy, tmp_path, monkeypatch):
    site = tmp_path / "site2"
    dist = site / "toy_clone-2.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-clone\nVersion: 2.0\n")
    (dist / "entry_points.txt").write_text("[textlab.plugins]\ntoyclone = toy_clone_mod\n")
    (site / "toy_clone_mod.py").write_text(textwrap.dedent(TASK_PLUGIN.format(task="toy")))
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    res = cli("plugins")
    assert res.code == 1 and len(res.err_lines) == 1
    assert "'toy'" in res.err and "'toyclone'" in res.err


EMBEDDER_PLUGIN = """
    import textlab

    def vectors(text, out_dir, *, dim, seed=0, device="cpu"):
        return {{"vectors": str(text)}}

    @textlab.hookimpl
    def textlab_embedders():
        return [textlab.EmbedderSpec(name={name!r}, train=vectors)]
"""


def test_embedders_are_found_by_name_and_unique(mods):
    a = mods("emb_a", EMBEDDER_PLUGIN.format(name="glove"))
    reg = plugins.Registry().load(entry_points=[a])
    assert reg.embedder("glove").train("t.txt", "out", dim=4) == {"vectors": "t.txt"}
    assert reg._info("emb_a").registered == {"embedders": ["glove"]}
    with pytest.raises(UsageError, match="unknown embedder 'glov'") as err:
        reg.embedder("glov")
    assert "did you mean 'glove'" in err.value.line()
    b = mods("emb_b", EMBEDDER_PLUGIN.format(name="glove"))
    with pytest.raises(PluginError) as err:
        plugins.Registry().load(entry_points=[a, b])
    assert "embedder 'glove'" in err.value.line() and "'emb_a'" in err.value.line() and "'emb_b'" in err.value.line()


def test_every_hook_is_documented_and_exercised():
    """Meta-test (as simonw/llm does): each hookspec is in the README and in a test plugin."""
    from pathlib import Path

    from textlab import hookspecs

    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text()
    toy = (repo / "tests" / "plugins" / "textlab_toy" / "textlab_toy" / "__init__.py").read_text()
    core = (repo / "textlab" / "builtins.py").read_text()
    hooks = [n for n in dir(hookspecs) if n.startswith("textlab_")]
    assert len(hooks) == 6
    for hook in hooks:
        assert f"`{hook}`" in readme, hook
        assert f"def {hook}(" in toy + core, hook

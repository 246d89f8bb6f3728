"""The package's shape: one owner for options, settings and construction; a clean import graph."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import click
import pytest

from cwm_agent import settings as settings_mod
from cwm_agent.batch.cli import batch
from cwm_agent.cli import run
from cwm_agent.config import SETTINGS, resolve
from cwm_agent.scaling.command import best_of

PACKAGE = Path(settings_mod.__file__).resolve().parent
# The commands' modules: only the CLI's lazy table (strings, not imports) reaches them.
FRONT_DOORS = {
    "cwm_agent.cli",
    "cwm_agent.config_cli",
    "cwm_agent.doctor",
    "cwm_agent.batch.cli",
    "cwm_agent.scaling.command",
    "cwm_agent.traces.cli",
    "cwm_agent.show.cli",
    "cwm_agent.runtimes.cleanup_cli",
    "cwm_agent.prompts_cli",
    "cwm_agent.evaluate.cli",
    "cwm_agent.select.cli",
}
# Only these may build a model client or a runtime; everyone else asks factory.py.
BUILDERS = {"OpenAIModel", "CompletionsModel", "LocalRuntime", "DockerRuntime"}
ALLOWED_BUILDERS = {
    "cwm_agent.factory",
    "cwm_agent.models.cwm_chat",  # wraps an OpenAIModel for its transport
    "cwm_agent.runtimes.docker",  # snapshots the repository with a LocalRuntime
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str]]:
    """(module imported, name taken from it) for every import in the file, lazy ones too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub, "") if sub in MODULES else (target, alias.name))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, "") for alias in node.names)
    return [(t, n) for t, n in found if t in MODULES and t != name]


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_import_graph_has_no_cycles():
    edges = {m: {t for t, _ in imports if t != "cwm_agent"} for m, imports in GRAPH.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_no_module_imports_another_modules_private_names():
    private = [
        (module, target, name)
        for module, imports in GRAPH.items()
        for target, name in imports
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_nothing_imports_a_command_module():
    upward = [
        (module, target)
        for module, imports in GRAPH.items()
        for target, _ in imports
        if target in FRONT_DOORS and module != "cwm_agent.__main__"
    ]
    assert upward == []


# The layers, lowest first: a package imports nothing from a package above it.
LAYERS = (
    ("cwm_agent.verification",),
    ("cwm_agent.evaluate", "cwm_agent.scaling"),
    ("cwm_agent.batch", "cwm_agent.select"),
)


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_package_imports_one_above_it():
    rank = {package: level for level, layer in enumerate(LAYERS) for package in layer}
    upward = [
        (module, target)
        for module, imports in GRAPH.items()
        for target, _ in imports
        if _package(module) in rank
        and _package(target) in rank
        and rank[_package(target)] > rank[_package(module)]
    ]
    assert upward == []


def test_models_and_runtimes_are_built_only_by_the_factory():
    builders = []
    for module, path in MODULES.items():
        if module in ALLOWED_BUILDERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.value if isinstance(func, ast.Attribute) else func
                name = getattr(called, "id", None) or getattr(called, "attr", None)
                if name in BUILDERS:
                    builders.append((module, name, node.lineno))
    assert builders == []


def test_every_setting_fills_a_field_of_its_record():
    records = {
        "model": settings_mod.ModelSettings,
        "agent": settings_mod.AgentConfig,
        "runtime": settings_mod.RuntimeSettings,
        "scaling": settings_mod.ScalingSettings,
        "batch": settings_mod.BatchLimits,
    }
    for spec in SETTINGS.values():
        assert spec.target in {f.name for f in fields(records[spec.group])}, spec.name
    cfg = resolve({"model": "m"}, use_file=False, env={})
    built = settings_mod.build(cfg, Path("."))
    for spec in SETTINGS.values():
        record = {
            "model": built.model,
            "agent": built.agent,
            "runtime": built.runtime,
            "scaling": built.scaling,
            "batch": settings_mod.record("batch", cfg),  # the batch's own, not a run's
        }[spec.group]
        expected = "m" if spec.name == "model" else spec.default
        assert getattr(record, spec.target) == expected, spec.name


def _flags(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


@pytest.mark.parametrize("command", [run, best_of, batch], ids=["run", "best-of", "batch"])
def test_the_shared_commands_take_every_setting(command):
    """Every setting but the batch's own budgets (a whole batch's), which only batch takes."""
    own = {spec.flag for spec in SETTINGS.values() if spec.group == "batch"}
    expected = {spec.flag for spec in SETTINGS.values()} - (set() if command is batch else own)
    assert expected <= _flags(command)
    assert command is batch or not own & _flags(command)


def test_no_option_help_is_written_twice():
    """Each help text has one author: identical texts on different options are a copy."""
    helps: dict[str, set[str]] = {}
    for command in (run, best_of, batch):
        for param in command.params:
            if isinstance(param, click.Option) and param.help:
                helps.setdefault(param.help, set()).add(param.name or "")
    assert [(text, names) for text, names in helps.items() if len(names) > 1] == []


# Only console.say writes a message to stderr, and it makes it visible: a command that
# printed an instance id, a path or a server's text there itself would hand escapes to the
# terminal. The tracer is a child process (its stderr is captured, never shown raw) and the
# scripted server a test tool; the live displays print rich text they make visible.
STDERR_WRITERS = {"cwm_agent.console", "cwm_agent.traces.tracer", "cwm_agent.scripted_server"}


def _stderr_writes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        func = ast.unparse(node.func)
        to_stderr = (
            keywords.get("err") == "True"
            or keywords.get("file") in ("sys.stderr", "sys.__stderr__")
            or func in ("sys.stderr.write", "sys.stderr.writelines", "sys.__stderr__.write")
        )
        if to_stderr:
            found.append(f"{path.name}:{node.lineno}: {func}")
    return found


def test_only_console_say_writes_messages_to_stderr():
    found = [
        hit for name, path in MODULES.items() if name not in STDERR_WRITERS
        for hit in _stderr_writes(path)
    ]  # fmt: skip
    assert found == []

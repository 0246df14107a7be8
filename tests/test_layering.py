"""The layering of the packages, read from the source (the AST of every module), not imported.

Rules:

1. ``crypto`` and ``scanning`` are leaves: they import nothing of ``gateway``, ``mailboxes`` or
   ``admin_ui``. Every import counts here, also one inside a function or under
   ``if TYPE_CHECKING:``: they pass plain values or define their own settings type.
2. ``gateway`` does not import ``admin_ui`` (the staff web app is built on the gateway, not the
   other way round), except in the modules named in ``GATEWAY_MODULES_THAT_START_THE_WEB_APP``:
   the serve part that starts the web app. Every import counts here too.
3. No import cycle between modules of ``gateway``. Every import counts, also one inside a
   function or under ``if TYPE_CHECKING:``: Python tolerates such a circle at run time, but
   it is still two modules that need each other (the circles this rule was written for,
   ``held -> policy.outbound -> keydir.keys -> held`` and ``pipeline.context <->
   pipeline.crypto_state``, both went through such deferred imports).

``from a.b import c`` is an import of the module ``a.b.c`` if there is one, else of ``a.b``;
``import a.b.c`` is an import of ``a.b.c`` (not of its parent packages). Module files are found
by walking the package directories, so a module added or moved is covered without a change
here.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "crypto", "scanning", "mailboxes", "admin_ui")

# The one place where the gateway starts the staff web app and so must import admin_ui.
# Whoever moves or renames that module renames it here.
GATEWAY_MODULES_THAT_START_THE_WEB_APP = frozenset({"gateway.serve.parts"})

LEAF_PACKAGES = ("crypto", "scanning")
LEAVES_MUST_NOT_IMPORT = ("gateway", "mailboxes", "admin_ui")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    at_import_time: bool  # module level, not in a function nor under TYPE_CHECKING

    def __str__(self) -> str:
        return f"{self.importer} (line {self.line}) imports {self.imported}"


def find_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``, by dotted name."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(body: list[ast.stmt], at_import_time: bool
                  ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, at_import_time
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _import_nodes(node.body, False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.body, False)
            yield from _import_nodes(node.orelse, at_import_time)
        else:
            # Class bodies, try/if/with/for/while/match blocks: walk every statement list.
            for name in ("body", "orelse", "finalbody"):
                yield from _import_nodes(getattr(node, name, []), at_import_time)
            for handler in getattr(node, "handlers", []):
                yield from _import_nodes(handler.body, at_import_time)
            for case in getattr(node, "cases", []):
                yield from _import_nodes(case.body, at_import_time)


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """The imports in ``path`` (the module ``module``) of modules of our packages."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node, at_import_time in _import_nodes(tree.body, True):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base_parts = module.split(".")
                if not is_package:
                    base_parts.pop()
                if node.level > 1:
                    base_parts = base_parts[:-(node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                targets.append(candidate if candidate in known else base)
        for target in targets:
            # "import gateway.x.y" of a name that is no module file: the nearest module.
            while target and target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known:
                yield Import(module, target, node.lineno, at_import_time)


def all_imports(root: Path, packages: Iterable[str]) -> list[Import]:
    modules = find_modules(root, packages)
    known = set(modules)
    return [imp for module, path in modules.items() for imp in imports_of(module, path, known)]


def _in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def forbidden_imports(imports: Iterable[Import], importers: Iterable[str],
                      imported: Iterable[str], allowed: frozenset[str] = frozenset()
                      ) -> list[Import]:
    importers, imported = tuple(importers), tuple(imported)
    return [imp for imp in imports
            if any(_in_package(imp.importer, p) for p in importers)
            and any(_in_package(imp.imported, p) for p in imported)
            and imp.importer not in allowed]


def import_cycles(imports: Iterable[Import], package: str) -> list[list[str]]:
    """One shortest cycle per strongly connected group of ``package``'s modules.

    A cycle is given as a path that starts and ends with the same module.
    """
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if _in_package(imp.importer, package) \
                and _in_package(imp.imported, package) and imp.importer != imp.imported:
            graph.setdefault(imp.importer, set()).add(imp.imported)
            graph.setdefault(imp.imported, set())
    cycles = []
    for group in _strongly_connected(graph):
        if len(group) > 1:
            cycles.append(_shortest_cycle(graph, group))
    return sorted(cycles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively (no recursion limit on a long chain)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
    return groups


def _shortest_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    best: list[str] | None = None
    for start in sorted(group):
        came_from: dict[str, str] = {}
        queue = deque([start])
        found = False
        while queue and not found:
            node = queue.popleft()
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    cycle = [start, *reversed(path[:-1]), start]
                    if best is None or len(cycle) < len(best):
                        best = cycle
                    found = True
                    break
                if nxt not in came_from:
                    came_from[nxt] = node
                    queue.append(nxt)
    assert best is not None
    return best


def _report(found: Iterable[object]) -> str:
    return "\n  " + "\n  ".join(str(item) for item in found)


# --- the rules, over this repository -----------------------------------------------------------

@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports(ROOT, PACKAGES)


def test_every_package_is_read(imports: list[Import]) -> None:
    modules = find_modules(ROOT, PACKAGES)
    for package in PACKAGES:
        assert package in modules, f"no package directory {package}/ under {ROOT}"
    assert any(imp.importer.startswith("gateway.") for imp in imports)


@pytest.mark.parametrize("leaf", LEAF_PACKAGES)
def test_leaf_packages_import_nothing_of_ours_above_them(imports: list[Import],
                                                        leaf: str) -> None:
    wrong = forbidden_imports(imports, [leaf], LEAVES_MUST_NOT_IMPORT)
    assert not wrong, (f"{leaf}/ must not import {', '.join(LEAVES_MUST_NOT_IMPORT)} "
                       f"(pass plain values or a settings type of its own):{_report(wrong)}")


def test_gateway_imports_admin_ui_only_where_it_starts_the_web_app(
        imports: list[Import]) -> None:
    wrong = forbidden_imports(imports, ["gateway"], ["admin_ui"],
                              allowed=GATEWAY_MODULES_THAT_START_THE_WEB_APP)
    assert not wrong, ("gateway/ must not import admin_ui/ (only the modules in "
                       f"GATEWAY_MODULES_THAT_START_THE_WEB_APP may):{_report(wrong)}")


def test_the_allowed_web_app_starters_exist_and_need_the_exception(
        imports: list[Import]) -> None:
    """A stale exception would silently allow a module that no longer starts the web app."""
    modules = find_modules(ROOT, PACKAGES)
    for module in sorted(GATEWAY_MODULES_THAT_START_THE_WEB_APP):
        assert module in modules, (
            f"{module} (GATEWAY_MODULES_THAT_START_THE_WEB_APP in {Path(__file__).name}) does "
            "not exist: name the module that now starts the web app")
        assert forbidden_imports(imports, [module], ["admin_ui"]), (
            f"{module} no longer imports admin_ui: drop it from "
            "GATEWAY_MODULES_THAT_START_THE_WEB_APP")


def test_no_import_cycles_in_gateway(imports: list[Import]) -> None:
    cycles = import_cycles(imports, "gateway")
    assert not cycles, ("import cycles between modules of gateway/ (module-level imports; "
                        "let one side call the other only, or move what both need into a "
                        "module of its own):"
                        + _report(" -> ".join(cycle) for cycle in cycles))


# --- the checker itself, on a made-up tree -------------------------------------------------------

def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_reports_a_cycle_path_also_through_deferred_imports(
        tmp_path: Path) -> None:
    _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.sub import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "try:\n    from ..c import thing\nexcept ImportError:\n    pass\n",
        "pkg/c.py": "import pkg.a\n",
        # Deferred imports close a cycle too (d -> e at import time, e -> d in a function).
        "pkg/d.py": "from typing import TYPE_CHECKING\nimport pkg.e\n"
                    "if TYPE_CHECKING:\n    from pkg import a\n",
        "pkg/e.py": "def f():\n    from pkg import d\n\nclass K:\n    from pkg import c\n",
    })
    imports = all_imports(tmp_path, ["pkg"])
    assert import_cycles(imports, "pkg") == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"],
                                             ["pkg.d", "pkg.e", "pkg.d"]]
    deferred = {(i.importer, i.imported) for i in imports if not i.at_import_time}
    assert deferred == {("pkg.d", "pkg.a"), ("pkg.e", "pkg.d")}


def test_the_checker_counts_every_import_for_forbidden_packages(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "low/__init__.py": "",
        "low/x.py": "def f():\n    import high.y\n",
        "high/__init__.py": "",
        "high/y.py": "import low.x\n",
        "high/start.py": "from high import y\n",
    })
    imports = all_imports(tmp_path, ["low", "high"])
    wrong = forbidden_imports(imports, ["low"], ["high"])
    assert [str(i) for i in wrong] == ["low.x (line 2) imports high.y"]
    assert forbidden_imports(imports, ["high"], ["low"], allowed=frozenset({"high.y"})) == []

"""The code a step runs, as one digest that Snakemake records with the step's params.

Snakemake's own code trigger sees a rule's script, not the package modules the script calls. So every
rule carries ``code=code_of("scripts/<step>.py")`` (rules/common.smk): a digest of the script and of
exactly the ``robustcert`` source it runs, found by reading (never importing) the code:

- every ``import``/``from … import`` of the script, and, transitively, of the code it reaches — also
  the imports inside function bodies (the stage modules import the domain modules lazily);
- of a module, only what the step can run: its top-level statements (always executed on import), the
  functions and classes the step names and, within the module, those they name in turn. ``from
  robustcert.workflow.ensemble import train_shard`` takes ``train_shard``, not ``score_ensemble``; a
  module bound to a name (``from robustcert import train``) takes the attributes used (``train.fit``),
  or the whole module where the name is used otherwise; ``import robustcert.x`` takes all of ``x``;
- the parsed code without docstrings (``ast.dump``), so a comment, a docstring or a blank line is no
  change; and, where that code imports torch (a step that computes), the installed versions of torch,
  torchvision and numpy.

Then a change of a module reruns exactly the jobs whose steps reach the changed part (Snakemake's
``params`` trigger: "Params have changed since last execution"), and it does so also after a ``pull``
on a later commit, where file times say nothing. ``python -m robustcert.fingerprint scripts/train_shard.py``
lists what one digest covers.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PACKAGE = "robustcert"
PACKAGE_DIR = Path(__file__).resolve().parent
#: Imported by a step's code, they make it a computing step whose digest holds the library versions.
COMPUTE_IMPORTS = frozenset({"torch", "torchvision"})
VERSIONED = ("torch", "torchvision", "numpy")

Roots = frozenset[str] | None  # the names of a module a step uses; None: all of it


@dataclass(frozen=True, eq=False)
class Statement:
    """What one top-level statement names and imports (imports under ``if TYPE_CHECKING:`` do not run)."""

    node: ast.stmt
    names: frozenset[str]  # every name it reads or binds
    attributes: dict[str, frozenset[str]]  # name → the attributes read from it (``train.fit``)
    bare: frozenset[str]  # names read other than as ``name.attribute``
    imports: tuple[ast.Import | ast.ImportFrom, ...]

    @functools.cached_property
    def digest(self) -> str:
        """Of the parsed code: positions, comments and docstrings do not count."""
        return hashlib.sha256(ast.dump(self.node, include_attributes=False).encode()).hexdigest()

    @classmethod
    def of(cls, node: ast.stmt) -> Statement:
        names, bare, attributes, bases = set(), set(), {}, set()
        nodes = list(_code_nodes(node))
        for each in nodes:
            if isinstance(each, ast.Attribute) and isinstance(each.value, ast.Name):
                attributes.setdefault(each.value.id, set()).add(each.attr)
                bases.add(id(each.value))
        for each in nodes:
            if isinstance(each, ast.Name):
                names.add(each.id)
                if isinstance(each.ctx, ast.Load) and id(each) not in bases:
                    bare.add(each.id)
        return cls(node, frozenset(names), {k: frozenset(v) for k, v in attributes.items()}, frozenset(bare),
                   tuple(_imports(node)))


@dataclass(frozen=True, eq=False)
class Module:
    """One parsed module (docstrings removed): its top-level statements and its definitions by name."""

    name: str
    package: str  # what a relative import is relative to
    body: tuple[Statement, ...]

    @classmethod
    def parse(cls, path: Path, name: str, package: str) -> Module:
        tree = _strip_docstrings(ast.parse(path.read_text(), filename=str(path)))
        return cls(name, package, tuple(Statement.of(node) for node in tree.body if not _is_main_block(node)))

    @functools.cached_property
    def definitions(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for index, statement in enumerate(self.body):
            if isinstance(statement.node, _DEFINITIONS):
                found.setdefault(statement.node.name, []).append(index)
        return found

    @functools.lru_cache(maxsize=None)  # noqa: B019 - modules live as long as the process
    def used(self, roots: Roots) -> tuple[tuple[Statement, ...], frozenset[str] | None]:
        """The statements that a step using the names ``roots`` can run (top-level code always runs on
        import; of the functions and classes, those named, and those they name), in file order, and
        the names they use (None: the whole module)."""
        if roots is None:
            return self.body, None
        kept = {i for i, statement in enumerate(self.body) if not isinstance(statement.node, _DEFINITIONS)}
        todo = set(roots).union(*(self.body[i].names for i in kept))
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for index in self.definitions.get(name, []):
                kept.add(index)
                todo |= self.body[index].names
        return tuple(self.body[i] for i in sorted(kept)), frozenset(seen)


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _code_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` without type annotations: naming a class in an annotation does not run it."""
    todo = [node]
    while todo:
        node = todo.pop()
        yield node
        skip = {id(getattr(node, key, None)) for key in ("annotation", "returns")} - {id(None)}
        todo.extend(child for child in ast.iter_child_nodes(node) if id(child) not in skip)


def _strip_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, *_DEFINITIONS)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _is_main_block(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` — it never runs when the module is imported."""
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__" \
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements in ``node`` that run (not those under ``if TYPE_CHECKING:``)."""
    todo = [node]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif _is_type_checking(node):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def module_file(name: str) -> tuple[Path, bool] | None:
    """The file of a module of the package and whether it is a package (``__init__.py``); None if none."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), False
    return None


@functools.lru_cache(maxsize=None)
def load(name: str) -> Module:
    """A module of the package, parsed (not imported)."""
    found = module_file(name)
    if found is None:
        raise ImportError(f"{name} is not a module of {PACKAGE} ({PACKAGE_DIR})")
    path, is_package = found
    return Module.parse(path, name, name if is_package else name.rpartition(".")[0])


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _attribute_uses(part: tuple[Statement, ...], alias: str) -> Roots:
    """The attributes read from a name bound to a module (``train.fit`` → fit); None if the name is
    also used otherwise (passed on, ``getattr``), which takes the whole module."""
    if any(alias in statement.bare for statement in part):
        return None
    return frozenset().union(*(statement.attributes.get(alias, frozenset()) for statement in part))


def requests(module: Module, part: tuple[Statement, ...], used: frozenset[str] | None
             ) -> Iterator[tuple[str, Roots]]:
    """(module, names) that the statements ``part`` of ``module`` import from the package and, of the
    names imported, use (``used``; None: all). An import whose name is unused still runs the imported
    module's top level."""
    for node in (node for statement in part for node in statement.imports):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if module_file(alias.name):
                    yield alias.name, _attribute_uses(part, alias.asname) if alias.asname else None
            continue
        base = _absolute(module, node)
        if module_file(base):
            for alias in node.names:
                yield from _from_import(base, alias, part, used)


def _from_import(base: str, alias: ast.alias, part: tuple[Statement, ...], used: frozenset[str] | None
                 ) -> Iterator[tuple[str, Roots]]:
    child, local = f"{base}.{alias.name}", alias.asname or alias.name
    is_module = module_file(child) is not None
    if alias.name == "*":
        yield base, None
    elif used is not None and local not in used:
        yield (child if is_module else base), frozenset()
    elif is_module:
        yield child, _attribute_uses(part, local)
    else:
        yield base, frozenset({alias.name})


def _libraries(part: tuple[Statement, ...]) -> set[str]:
    """The top-level names of the packages outside ours that ``part`` imports."""
    found = set()
    for node in (node for statement in part for node in statement.imports):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def _merge(have: Roots | object, want: Roots) -> Roots:
    if have is _ABSENT:
        return want
    if have is None or want is None:
        return None
    return have | want


_ABSENT = object()


def reached(script: Path) -> dict[str, Roots]:
    """Every module of the package that the script can run, with the names of it that it uses
    (None: all of it)."""
    top = Module.parse(Path(script), str(script), PACKAGE)
    used: dict[str, Roots] = {}
    todo = deque(requests(top, top.body, None))
    while todo:
        name, want = todo.popleft()
        parents = name.split(".")
        todo.extend((".".join(parents[:i]), frozenset()) for i in range(1, len(parents)))
        have = used.get(name, _ABSENT)
        merged = _merge(have, want)
        if have is not _ABSENT and merged == have:
            continue
        used[name] = merged
        module = load(name)
        todo.extend(requests(module, *module.used(merged)))
    return used


def _digest(part: Iterable[Statement]) -> str:
    return hashlib.sha256(" ".join(statement.digest for statement in part).encode()).hexdigest()[:16]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def covered(script: str | Path) -> dict[str, str]:
    """What the digest of a script covers: {"<script>" and each module: digest of its used part}, and
    the versions of the libraries: torch, torchvision and numpy where the code imports torch
    (torchvision comes with it), numpy alone where it imports numpy but not torch."""
    script = Path(script).resolve()
    parts = {"<script>": Module.parse(script, str(script), PACKAGE).body}
    parts.update({name: load(name).used(roots)[0] for name, roots in sorted(reached(script).items())})
    entries = {name: _digest(part) for name, part in parts.items()}
    libraries = set().union(*(_libraries(part) for part in parts.values()))
    versioned = VERSIONED if libraries & COMPUTE_IMPORTS else [name for name in VERSIONED if name in libraries]
    entries.update({name: _version(name) for name in versioned})
    return entries


@functools.lru_cache(maxsize=None)
def code_of(script: str | Path) -> str:
    """One digest of the script, of the package code it runs and of the library versions (``covered``);
    where the script lies does not count. Kept in :func:`cache_dir` under a key of every byte it can
    depend on (:func:`inputs_key`), so that a Snakefile parse reads the digests of unchanged code instead
    of walking the package again (about 3 s of every snakemake start)."""
    cached = _cache_path(script)
    known = _read_cached(cached)
    if known is not None:
        return known
    lines = [f"{name} {digest}" for name, digest in covered(script).items()]
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:20]
    _write_cached(cached, digest)
    return digest


def cache_dir() -> Path | None:
    """Where digests are kept: ``$XDG_CACHE_HOME/robustcert/fingerprints`` (``~/.cache`` without it);
    None where there is no home."""
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:
        return None
    return base / "robustcert" / "fingerprints"


@functools.lru_cache(maxsize=1)
def package_key() -> str:
    """A digest of every byte of the package's source (each file's path and content) and of the library
    versions a digest can hold: equal keys give equal digests of the same script."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(f"{path.relative_to(PACKAGE_DIR).as_posix()}\0".encode() + path.read_bytes() + b"\0")
    digest.update(" ".join(f"{name}={_version(name)}" for name in VERSIONED).encode())
    return digest.hexdigest()


def inputs_key(script: str | Path) -> str:
    """The cache key of a script's digest: the package's (:func:`package_key`) and the script's bytes."""
    return hashlib.sha256(package_key().encode() + Path(script).read_bytes()).hexdigest()[:40]


def _cache_path(script: str | Path) -> Path | None:
    folder = cache_dir()
    return None if folder is None else folder / inputs_key(script)


def _read_cached(path: Path | None) -> str | None:
    """A kept digest (20 hex digits), or None where there is none or it is not one."""
    try:
        text = path.read_text().strip() if path is not None else ""
    except OSError:
        return None
    return text if len(text) == 20 and all(c in "0123456789abcdef" for c in text) else None


def _write_cached(path: Path | None, digest: str) -> None:
    """Keep a digest (atomically; a folder that cannot be written keeps nothing)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(digest)
        partial.replace(path)
    except OSError:
        return


def main(argv: list[str] | None = None) -> int:
    """``python -m robustcert.fingerprint SCRIPT …``: each script's digest and what it covers."""
    for script in argv if argv is not None else sys.argv[1:]:
        print(f"{script}: {code_of(script)}")
        for name, digest in covered(script).items():
            print(f"  {name}  {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

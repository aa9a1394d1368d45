"""The committed TensorRT API snapshots, and what deploykit's TensorRT code touches in them.

Helpers for ``test_trt_bindings.py`` and ``test_trt_api_usage.py`` (not a test module).

Snapshots: ``tests/data/trt_api/tensorrt-<version>.json``, written by
``tools/trt_api_snapshot.py`` from the real binding wheels of each release.

The TensorRT modules of deploykit are found, not listed: every module under ``deploykit/``
that imports ``tensorrt``/``tensorrt_bindings``, calls a loader (a function that imports
``tensorrt`` and returns it) or has a function parameter named ``trt`` (deploykit's
convention for the module a loader returned).

:func:`check_module` follows TensorRT values through each of those modules with a small type
inference driven by the snapshot itself: ``trt.Builder(logger)`` is a ``Builder``;
``builder.create_network(flags)`` has the return type its pybind signature states
(``INetworkDefinition``); properties have the type of their getter; ``self.x = ...`` in one
method types ``self.x`` in the others; a local function's return type is what it returns.
Every attribute read, property write, method call (positional count and keyword names against
the overloads), enum value and overridden method (``log`` in a ``trt.ILogger`` subclass) on such
a value is looked up in the release being checked.

A *version check* is an ``if`` statement or conditional expression whose condition either

- reads ``<trt>.__version__`` (directly or as an argument, e.g.
  ``uses_strongly_typed_flag(trt.__version__)``): the condition is evaluated with the module's
  own globals and each release's version string, and only the branch it takes in that release
  is checked there; or
- is ``hasattr(value, "name")`` on a TensorRT value: the body is checked only in releases whose
  snapshot has ``name`` on that value's type, the ``else`` branch only in the others.

``getattr(value, "name", default)`` (three arguments) is a tolerant lookup and is not required.
A condition that cannot be evaluated this way is not a version check: both branches must work
in every release.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import deploykit
from deploykit.tensorrt.loading import MIN_TENSORRT, parse_version

PACKAGE = Path(deploykit.__file__).parent
SNAPSHOT_DIR = Path(__file__).parent / "data" / "trt_api"
TRT_MODULES = ("tensorrt", "tensorrt_bindings")
TRT_PARAMETER = "trt"


# --------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    """One release's API surface (see tools/trt_api_snapshot.py for the format)."""

    version: str
    data: dict = field(repr=False, compare=False, hash=False)

    @property
    def classes(self) -> dict:
        return self.data["classes"]

    @property
    def enums(self) -> dict:
        return self.data["enums"]

    def type_name(self, text: str | None) -> str | None:
        """A class or enum name of this release for a signature's type text, else None."""
        if not text:
            return None
        text = text.strip()
        for candidate in (text, text.split("::")[-1], text.split("::")[-1].removeprefix("I")):
            if candidate in self.classes or candidate in self.enums:
                return candidate
        return None

    def mro(self, cls: str) -> Iterator[str]:
        seen, todo = set(), [cls]
        while todo:
            name = todo.pop(0)
            if name in seen or name not in self.classes:
                continue
            seen.add(name)
            yield name
            todo += self.classes[name]["bases"]

    def member(self, cls: str, name: str) -> dict | None:
        for owner in self.mro(cls):
            found = self.classes[owner]["members"].get(name)
            if found is not None:
                return found
        return None

    def subclass_of(self, cls: str, base: str) -> bool:
        return base in set(self.mro(cls))


@cache
def snapshots() -> tuple[Api, ...]:
    """Every committed snapshot, oldest release first."""
    found = []
    for path in SNAPSHOT_DIR.glob("tensorrt-*.json"):
        data = json.loads(path.read_text())
        found.append(Api(data["version"], data))
    return tuple(sorted(found, key=lambda api: parse_version(api.version)))


def supported() -> tuple[Api, ...]:
    """The snapshots of releases deploykit claims to support (``MIN_TENSORRT`` and newer)."""
    return tuple(api for api in snapshots() if parse_version(api.version)[:2] >= MIN_TENSORRT)


def newest() -> Api:
    return snapshots()[-1]


# --------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([<{":
            depth += 1
        elif char in ")]>}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


@dataclass(frozen=True)
class Signature:
    params: tuple[tuple[str, str | None, bool], ...]  # (name, type text, has default), self excluded
    returns: str | None
    varargs: bool

    def accepts(self, positional: int, keywords: tuple[str, ...]) -> bool:
        if self.varargs:
            return True
        names = [p[0] for p in self.params]
        if positional > len(names) or any(k not in names[positional:] for k in keywords):
            return False
        given = set(names[:positional]) | set(keywords)
        return all(has_default or name in given for name, _, has_default in self.params)


def parse_signature(text: str, method: bool = True) -> Signature:
    """``"f(self: X, a: int, b: Y = 0) -> Z"`` -> params a, b (b has a default), returns ``"Z"``."""
    open_at = text.index("(")
    depth, close_at = 0, len(text) - 1
    for index in range(open_at, len(text)):
        depth += text[index] == "("
        depth -= text[index] == ")"
        if depth == 0:
            close_at = index
            break
    params, varargs = [], False
    for piece in _split_top(text[open_at + 1 : close_at]):
        if piece.startswith("*") or piece == "/":
            varargs = varargs or piece.startswith("*")
            continue
        name, _, rest = piece.partition(":")
        kind, _, default = rest.partition(" = ")
        params.append((name.strip(), kind.strip() or None, bool(default) or "=" in name))
    if method and params and params[0][0] in ("self", "arg0"):
        params = params[1:]
    returns = text[close_at + 1 :].partition("->")[2].strip() or None
    return Signature(tuple(params), returns, varargs)


# --------------------------------------------------------------------------------------
# Finding deploykit's TensorRT modules
# --------------------------------------------------------------------------------------


def _imports_trt(node: ast.AST) -> list[str]:
    """Names ``node`` binds to the TensorRT module (``import tensorrt as trt`` -> ["trt"])."""
    if isinstance(node, ast.Import):
        return [a.asname or a.name for a in node.names if a.name.split(".")[0] in TRT_MODULES]
    return []


def _loader_names(trees: dict[str, ast.Module]) -> set[str]:
    """Functions that import tensorrt and return it (``load_tensorrt``)."""
    loaders = set()
    for tree in trees.values():
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            bound = {name for node in ast.walk(func) for name in _imports_trt(node)}
            returns = {n.value.id for n in ast.walk(func) if isinstance(n, ast.Return) and isinstance(n.value, ast.Name)}
            if bound & returns:
                loaders.add(func.name)
    return loaders


def _called_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return None


@dataclass(frozen=True)
class TrtModule:
    path: Path
    name: str  # deploykit.x.y
    tree: ast.Module = field(repr=False, compare=False, hash=False)
    why: str = ""

    @property
    def relative(self) -> str:
        return self.path.relative_to(PACKAGE.parent).as_posix()


@cache
def package_trees() -> dict[Path, ast.Module]:
    """Every module of the deploykit package, parsed once."""
    return {path: ast.parse(path.read_text(encoding="utf-8"), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


@cache
def loaders() -> frozenset[str]:
    return frozenset(_loader_names({str(p): t for p, t in package_trees().items()}))


@cache
def local_functions() -> dict[str, list[str]]:
    """Module-level functions of the TensorRT modules -> their positional parameter names."""
    found = {}
    for module in trt_modules():
        for node in module.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[node.name] = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
    return found


@cache
def trt_modules() -> tuple[TrtModule, ...]:
    found = []
    for path, tree in package_trees().items():
        why = ""
        for node in ast.walk(tree):
            if _imports_trt(node) or (
                isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in TRT_MODULES
            ):
                why = "imports tensorrt"
            elif not why and _called_name(node) in loaders():
                why = f"calls {_called_name(node)}()"
            elif not why and isinstance(node, ast.arg) and node.arg == TRT_PARAMETER:
                why = f"takes the module as parameter {TRT_PARAMETER!r}"
        if why:
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            found.append(TrtModule(path, ".".join(p for p in parts if p != "__init__"), tree, why))
    return tuple(found)


# --------------------------------------------------------------------------------------
# Following TensorRT values through a module
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """What an expression is: the module, a class, an enum, an instance, or a bound method."""

    kind: str  # module | class | enum | instance | method | unbound | function | tuple
    name: str = ""  # class/enum name; "Class.method" for methods
    user: frozenset[str] = frozenset()  # names a deploykit subclass adds
    items: tuple = ()  # a tuple's element Values (None where unknown)

    def __str__(self) -> str:
        return {"module": "tensorrt", "class": f"class {self.name}", "enum": f"enum {self.name}"}.get(
            self.kind, self.name
        )


MODULE = Value("module", "tensorrt")
ENUM_INSTANCE_MEMBERS = {"name", "value", "__int__", "__index__"}
ALWAYS = {"__version__", "__name__", "__doc__", "__class__"}


@dataclass
class Use:
    """One place deploykit touches the TensorRT API, and what the release says about it."""

    where: str
    what: str
    problem: str | None = None
    scope: str = ""  # the enclosing function(s), e.g. "_trt_build"


class Checker(ast.NodeVisitor):
    """Walks one module for one release; ``uses`` ends with every checked access."""

    def __init__(self, module: TrtModule, api: Api, attrs: dict, returns: dict, params: dict):
        self.module, self.api = module, api
        self.attrs, self.returns = attrs, returns  # (class, attr) -> Value; function -> Value
        self.params = params  # (function, parameter) -> Value, from the calls deploykit makes
        self.uses: list[Use] = []
        self.env: dict[str, Value] = {}
        self.trt_names = {TRT_PARAMETER}
        self.class_stack: list[str] = []
        self.function_stack: list[str] = []
        self._globals: dict | None = None

    # ---- bookkeeping -------------------------------------------------------------------
    def use(self, node: ast.AST, what: str, problem: str | None = None) -> None:
        where = f"{self.module.relative}:{getattr(node, 'lineno', '?')}"
        self.uses.append(Use(where, what, problem, ".".join(self.function_stack[:1]) or "<module>"))

    def module_globals(self) -> dict:
        if self._globals is None:
            self._globals = dict(vars(importlib.import_module(self.module.name)))
        return self._globals

    # ---- types -------------------------------------------------------------------------
    def instance(self, text: str | None) -> Value | None:
        name = self.api.type_name(text)
        return Value("instance", name) if name else None

    def attribute(
        self, owner: Value, attr: str, node: ast.AST, store: bool = False, assigned: Value | None = None
    ) -> Value | None:
        api = self.api
        if attr in ALWAYS and owner.kind == "module":
            return None
        if owner.kind == "module":
            data = api.data
            if attr in api.classes:
                self.use(node, f"tensorrt.{attr}")
                return Value("class", attr)
            if attr in api.enums:
                self.use(node, f"tensorrt.{attr}")
                return Value("enum", attr)
            if attr in data["functions"]:
                self.use(node, f"tensorrt.{attr}()")
                return Value("function", attr)
            if attr in data["values"]:
                self.use(node, f"tensorrt.{attr}")
                return self.instance(data["values"][attr])
            self.use(node, f"tensorrt.{attr}", f"tensorrt has no {attr}")
            return None
        if owner.kind == "enum":
            if attr in api.enums.get(owner.name, {}):
                self.use(node, f"{owner.name}.{attr}")
                return Value("instance", owner.name)
            self.use(node, f"{owner.name}.{attr}", f"{owner.name} has no value {attr}")
            return None
        if owner.kind == "instance" and owner.name in api.enums:
            if attr not in ENUM_INSTANCE_MEMBERS:
                self.use(node, f"{owner.name} value .{attr}", f"a {owner.name} value has no {attr}")
            return None
        if owner.kind not in ("class", "instance") or owner.name not in api.classes:
            return None
        if attr in owner.user:
            return None
        member = api.member(owner.name, attr)
        what = f"{owner.name}.{attr}"
        if member is None:
            self.use(node, what, f"{owner.name} has no {attr}")
            return None
        kind = member["kind"]
        if store:
            if kind != "property":
                self.use(node, f"{what} = ...", f"{what} is a {kind}, not a settable property")
            elif member.get("readonly"):
                self.use(node, f"{what} = ...", f"{what} is read-only")
            elif not self.compatible(assigned, member.get("accepts")):
                self.use(node, f"{what} = ...", f"{what} takes {member.get('accepts')}, not {assigned}")
            else:
                self.use(node, f"{what} = ...")
            return None
        self.use(node, what)
        if kind == "enum":
            return Value("enum", member.get("alias") or f"{owner.name}.{attr}")
        if kind == "property":
            return self.instance(member.get("type")) if owner.kind == "instance" else None
        if kind == "value":
            return self.instance(member.get("type"))
        if kind in ("method", "constructor", "callable"):
            return Value("method" if owner.kind == "instance" else "unbound", what)
        if kind == "staticmethod":
            return Value("method", what)
        if kind == "class":
            return Value("class", f"{owner.name}.{attr}")
        return None

    def signatures(self, value: Value) -> list[Signature]:
        if value.kind in ("method", "unbound"):
            cls, _, name = value.name.rpartition(".")
            member = self.api.member(cls, name) or {}
            method = member.get("kind") != "staticmethod" and value.kind == "method"
            return [parse_signature(s, method) for s in member.get("signatures", [])]
        if value.kind == "class" and "__init__" in value.user:
            return []
        if value.kind == "class":
            member = self.api.member(value.name, "__init__") or {}
            return [parse_signature(s) for s in member.get("signatures", [])]
        if value.kind == "function":
            return [parse_signature(s, False) for s in self.api.data["functions"].get(value.name, [])]
        return []

    def compatible(self, arg: Value | None, text: str | None) -> bool:
        wanted = self.api.type_name(text)
        if arg is None or wanted is None or arg.kind != "instance":
            return True
        if wanted in self.api.enums or arg.name in self.api.enums:
            return arg.name == wanted
        return self.api.subclass_of(arg.name, wanted)

    def call(self, node: ast.Call, func: Value) -> Value | None:
        args = [self.expr(a) for a in node.args]
        keywords = {k.arg: self.expr(k.value) for k in node.keywords if k.arg}
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return None
        signatures = self.signatures(func)
        if not signatures:
            return Value("instance", func.name, func.user) if func.kind == "class" else None
        fits = [
            s
            for s in signatures
            if s.accepts(len(args), tuple(keywords))
            and all(self.compatible(a, s.params[i][1]) for i, a in enumerate(args) if i < len(s.params))
            and all(self.compatible(v, dict((p[0], p[1]) for p in s.params).get(k)) for k, v in keywords.items())
        ]
        label = f"{func.name}(" + ", ".join(["_"] * len(args) + [f"{k}=" for k in keywords]) + ")"
        if not fits:
            got = ", ".join(str(a) if a else "?" for a in args)
            self.use(node, label, f"no overload of {func.name} takes ({got}{', ' if got and keywords else ''}"
                     f"{', '.join(keywords)}): {'; '.join(s.returns or '' for s in signatures) and ''}"
                     f"{[str(s.params) for s in signatures]}")
            return None
        self.use(node, label)
        if func.kind == "class":
            return Value("instance", func.name, func.user)
        return self.instance(fits[0].returns)

    # ---- expressions -------------------------------------------------------------------
    def expr(self, node: ast.AST | None) -> Value | None:
        """The Value of an expression (None when it is not a known TensorRT value)."""
        if node is None:
            return None
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return self.env[node.id]
            return MODULE if node.id in self.trt_names else None
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and self.class_stack:
                return self.attrs.get((self.class_stack[-1], node.attr))
            owner = self.expr(node.value)
            return self.attribute(owner, node.attr, node) if owner else None
        if isinstance(node, ast.Call):
            return self.call_expr(node)
        if isinstance(node, ast.IfExp):
            taken = self.branch(node.test)
            body = self.expr(node.body) if taken in (True, None) else None
            other = self.expr(node.orelse) if taken in (False, None) else None
            return body or other
        if isinstance(node, ast.Tuple):
            items = tuple(self.expr(element) for element in node.elts)
            return Value("tuple", items=items) if any(items) else None
        if isinstance(node, ast.NamedExpr):
            value = self.expr(node.value)
            if value and isinstance(node.target, ast.Name):
                self.env[node.target.id] = value
            return value
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child)
            elif isinstance(child, ast.comprehension):
                self.expr(child.iter)
                for test in child.ifs:
                    self.expr(test)
        return None

    def call_expr(self, node: ast.Call) -> Value | None:
        name = _called_name(node)
        if isinstance(node.func, ast.Name) and name in ("getattr", "hasattr") and len(node.args) >= 2:
            owner = self.expr(node.args[0])
            literal = node.args[1]
            for extra in node.args[1:]:
                self.expr(extra)
            tolerant = name == "hasattr" or len(node.args) > 2  # hasattr / getattr with a default
            if owner and not tolerant and isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                return self.attribute(owner, literal.value, node)
            return None
        if isinstance(node.func, ast.Name) and name in loaders() and name not in self.env:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                self.expr(arg)
            return MODULE
        if isinstance(node.func, ast.Name) and node.func.id in local_functions() and node.func.id not in self.env:
            parameters = local_functions()[node.func.id]
            given = list(zip(parameters, node.args, strict=False)) + [(k.arg, k.value) for k in node.keywords if k.arg]
            for parameter, arg in given:
                value = self.expr(arg)
                if value is not None and parameter != TRT_PARAMETER:
                    self.params[(node.func.id, parameter)] = value
            return self.returns.get(node.func.id)
        func = self.expr(node.func)
        if func is not None and func.kind in ("method", "unbound", "class", "function"):
            return self.call(node, func)
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            self.expr(arg)
        return None

    # ---- version checks ----------------------------------------------------------------
    def branch(self, test: ast.AST) -> bool | None:
        """True/False when ``test`` is a version check decided for this release, else None."""
        if isinstance(test, ast.Call) and _called_name(test) == "hasattr" and len(test.args) == 2:
            owner = self.expr(test.args[0])
            literal = test.args[1]
            if owner and isinstance(literal, ast.Constant) and owner.name in self.api.classes:
                return self.api.member(owner.name, literal.value) is not None
            return None
        reads_version = any(
            isinstance(n, ast.Attribute) and n.attr == "__version__" and self.expr(n.value) == MODULE
            for n in ast.walk(test)
        )
        if not reads_version:
            self.expr(test)
            return None
        namespace = dict(self.module_globals())
        namespace.update({name: SimpleNamespace(__version__=self.api.version) for name in self.trt_names})
        namespace.update({name: SimpleNamespace(__version__=self.api.version) for name, value in self.env.items() if value == MODULE})
        try:
            return bool(eval(compile(ast.Expression(test), "<version check>", "eval"), namespace))
        except Exception:
            return None

    # ---- statements --------------------------------------------------------------------
    def body(self, statements: list[ast.stmt]) -> None:
        for statement in statements:
            self.visit(statement)

    def visit_If(self, node: ast.If) -> None:
        taken = self.branch(node.test)
        if taken in (True, None):
            self.body(node.body)
        if taken in (False, None):
            self.body(node.orelse)

    def visit_Import(self, node: ast.Import) -> None:
        self.trt_names.update(_imports_trt(node))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if (node.module or "").split(".")[0] in TRT_MODULES:
            for alias in node.names:
                value = self.attribute(MODULE, alias.name, node)
                if value:
                    self.env[alias.asname or alias.name] = value

    def assign(self, target: ast.AST, value: Value | None) -> None:
        if isinstance(target, ast.Name):
            if value is not None:
                self.env[target.id] = value
            elif target.id in self.env and target.id not in self.trt_names:
                pass  # keep what an earlier assignment found (x = None before x = builder...)
        elif isinstance(target, ast.Attribute):
            if isinstance(target.value, ast.Name) and target.value.id == "self" and self.class_stack:
                if value is not None:
                    self.attrs[(self.class_stack[-1], target.attr)] = value
                return
            owner = self.expr(target.value)
            if owner is not None:
                self.attribute(owner, target.attr, target, store=True, assigned=value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = value.items if value is not None and value.kind == "tuple" else ()
            for index, element in enumerate(target.elts):
                self.assign(element, items[index] if index < len(items) else None)
        else:
            self.expr(target)

    def visit_Assign(self, node: ast.Assign) -> None:
        value = self.expr(node.value)
        for target in node.targets:
            self.assign(target, value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.assign(node.target, self.expr(node.value))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.expr(node.value)
        self.expr(node.target)
        self.assign(node.target, None)

    def visit_Expr(self, node: ast.Expr) -> None:
        self.expr(node.value)

    def visit_Return(self, node: ast.Return) -> None:
        value = self.expr(node.value)
        if value is not None and self.function_stack:
            self.returns[self.function_stack[-1]] = value

    def generic_visit(self, node: ast.AST) -> None:
        for name, value in ast.iter_fields(node):
            if name in ("body", "orelse", "finalbody", "handlers"):
                continue
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, ast.expr):
                    self.expr(item)
                elif isinstance(item, ast.withitem):
                    self.assign(item.optional_vars, self.expr(item.context_expr)) if item.optional_vars else self.expr(item.context_expr)
        for name in ("body", "orelse", "finalbody"):
            self.body(getattr(node, name, None) or [])
        for handler in getattr(node, "handlers", None) or []:
            self.body(handler.body)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved = dict(self.env)
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            self.env.pop(arg.arg, None)
            if arg.arg == TRT_PARAMETER:
                self.env[arg.arg] = MODULE
            elif (node.name, arg.arg) in self.params:
                self.env[arg.arg] = self.params[(node.name, arg.arg)]
        self.function_stack.append(node.name)
        self.body(node.body)
        self.function_stack.pop()
        self.env = saved

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = [self.expr(b) for b in node.bases]
        base = next((b for b in bases if b is not None and b.kind == "class"), None)
        if base is not None:
            defined = {
                item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name != "__init__":
                    if self.api.member(base.name, item.name) is None:
                        self.use(item, f"{node.name}.{item.name} overrides {base.name}.{item.name}",
                                 f"{base.name} has no {item.name} to override")
                    else:
                        self.use(item, f"{node.name}.{item.name} overrides {base.name}.{item.name}")
            user = frozenset(n for n in defined if n == "__init__" or self.api.member(base.name, n) is None)
            self.env[node.name] = Value("class", base.name, user)
        self.class_stack.append(node.name)
        self.body(node.body)
        self.class_stack.pop()


def check_module(module: TrtModule, api: Api) -> list[Use]:
    """Every TensorRT use in ``module`` as ``api``'s release sees it (problems marked).

    Return types are shared with the other TensorRT modules (the runner calls the build
    module's ``create_runtime``), so those are walked too, first.
    """
    others = [m for m in trt_modules() if m.path != module.path]
    attrs: dict = {}
    returns: dict = {}
    params: dict = {}
    for _ in range(4):  # self.x, parameter and return types found late feed the next pass
        for other in others:
            Checker(other, api, {}, returns, params).visit(other.tree)
        checker = Checker(module, api, attrs, returns, params)
        checker.visit(module.tree)
    return checker.uses


def unresolved(module: TrtModule, uses: list[Use]) -> list[str]:
    """Accesses of TensorRT-only member names (``execute_async_v3``) that no use accounts for.

    A type lost on the way (a wrapper whose return type the checker cannot follow) would
    silently stop the checks after it; this finds such places.
    """
    members = {m for api in supported() for c in api.classes.values() for m in c["members"]}
    trt_only = {m for m in members if "_" in m.strip("_") and m not in own_names()}
    seen = {(u.where, u.what.split("(")[0].rsplit(".", 1)[-1].split(" ")[0]) for u in uses}
    seen |= {(u.where, u.what.split(" overrides ")[0].rsplit(".", 1)[-1]) for u in uses}
    missing = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and node.attr in trt_only:
            where = f"{module.relative}:{node.lineno}"
            if (where, node.attr) not in seen:
                missing.append(f"{where}: .{node.attr}")
    return missing


# --------------------------------------------------------------------------------------
# What went away
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Removed:
    """Names some snapshotted release has and the newest does not."""

    classes: dict[str, str]  # name -> "IInt8Calibrator (8.6.1..10.13.3.9)"
    enum_values: dict[str, dict[str, str]]  # enum -> value -> description
    members: dict[str, str]  # member name (on no class of the newest release) -> description
    functions: dict[str, str]


def _span(versions: list[str]) -> str:
    return versions[0] if len(versions) == 1 else f"{versions[0]}..{versions[-1]}"


@cache
def removed() -> Removed:
    last = newest()
    everywhere_now = (
        {m for c in last.classes.values() for m in c["members"]}
        | set(last.data["functions"])
        | set(last.data["values"])
        | set(last.classes)
        | set(last.enums)
    )
    classes: dict[str, list[str]] = {}
    enum_values: dict[str, dict[str, list[str]]] = {}
    members: dict[str, dict[str, list[str]]] = {}
    functions: dict[str, list[str]] = {}
    for api in snapshots()[:-1]:
        for name in api.classes:
            if name not in last.classes and "." not in name:
                classes.setdefault(name, []).append(api.version)
        for enum, values in api.enums.items():
            if enum not in last.enums and "." not in enum:
                classes.setdefault(enum, []).append(api.version)
                continue
            for value in values:
                if value not in last.enums.get(enum, {}):
                    enum_values.setdefault(enum, {}).setdefault(value, []).append(api.version)
        for cls, data in api.classes.items():
            for member in data["members"]:
                if member not in everywhere_now and not member.startswith("_"):
                    members.setdefault(member, {}).setdefault(cls, []).append(api.version)
        for name in api.data["functions"]:
            if name not in everywhere_now:
                functions.setdefault(name, []).append(api.version)
    gone = f"gone in {last.version}"
    return Removed(
        classes={k: f"{k} ({_span(v)}; {gone})" for k, v in classes.items()},
        enum_values={
            e: {k: f"{e}.{k} ({_span(v)}; {gone})" for k, v in values.items()} for e, values in enum_values.items()
        },
        members={
            m: ", ".join(f"{cls}.{m} ({_span(v)})" for cls, v in owners.items()) + f"; {gone}"
            for m, owners in members.items()
        },
        functions={k: f"tensorrt.{k} ({_span(v)}; {gone})" for k, v in functions.items()},
    )


@cache
def own_names() -> frozenset[str]:
    """Names deploykit binds itself: defs, parameters, keyword arguments, fields, ``self.x``."""
    names = set()
    for tree in package_trees().values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg):
                names.add(node.arg)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return frozenset(names)


def is_distinctive(name: str) -> bool:
    """A removed member name that can be flagged wherever it is accessed, by its name alone.

    Not a plain word (``precision``) and not a name deploykit binds for its own objects
    (``max_batch_size`` is a field of the Triton config, ``kernel_size`` a keyword of torch's
    Conv2d): those are checked with types in the TensorRT modules (test_trt_bindings.py).
    """
    plain = "_" not in name.strip("_") and not re.search(r"[a-z][A-Z]", name)
    return not plain and name not in own_names()


def uses_table() -> str:
    """Markdown: each function of the TensorRT modules and what of TensorRT it was checked for."""
    rows: dict[tuple[str, str], dict[str, set[str]]] = {}
    lines: dict[tuple[str, str], set[int]] = {}
    for api in supported():
        for module in trt_modules():
            for use in check_module(module, api):
                key = (module.relative, use.scope)
                name = use.what.split("(")[0].removeprefix("tensorrt.")
                rows.setdefault(key, {}).setdefault(name, set()).add(api.version)
                lines.setdefault(key, set()).add(int(use.where.rsplit(":", 1)[1]))
    every = {api.version for api in supported()}
    out = ["| module: function (lines) | TensorRT names checked (releases, when not all) |", "|---|---|"]
    for (path, scope), names in sorted(rows.items(), key=lambda item: (item[0][0], min(lines[item[0]]))):
        span = f"{min(lines[(path, scope)])}-{max(lines[(path, scope)])}"
        listed = ", ".join(
            f"`{name}`" + ("" if versions == every else f" ({', '.join(sorted(versions, key=parse_version))})")
            for name, versions in sorted(names.items())
        )
        out.append(f"| `{path}`: `{scope}` ({span}) | {listed} |")
    return "\n".join(out)


if __name__ == "__main__":  # python3 tests/trt_api.py: the table docs/tensorrt.md shows
    print(uses_table())

"""Triton's ``config.pbtxt``: the protobuf text format, parsed without heavy dependencies.

Two layers:

- :func:`parse` is a small, strict parser of the protobuf *text format* (the grammar of
  ``google.protobuf.text_format``) into :class:`Message` objects. It needs nothing but the
  standard library, so ``deploykit repo check`` works on a core install, and it reports syntax
  errors with line and column as Triton would.
- :func:`schema_error` checks the text against Triton's own ``ModelConfig`` message when the
  schema is at hand (``tritonclient`` bundles ``model_config_pb2``; it needs only protobuf):
  unknown field names, wrong enum values, a non-repeated field given twice. It returns None
  when the schema is not installed.

The parser does not know which fields are repeated; every field is stored as a list and
:meth:`Message.get` returns the last occurrence (what protobuf does for a singular field).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deploykit.errors import DeployKitError

__all__ = ["Ident", "Message", "PbtxtError", "parse", "parse_file", "schema_available", "schema_error"]


class PbtxtError(DeployKitError):
    """A syntax error in protobuf text format, with the 1-based line and column."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"{line}:{column}: {message}")
        self.reason = message
        self.line = line
        self.column = column


class Ident(str):
    """A bare identifier value: an enum name (``TYPE_FP32``, ``KIND_CPU``) or true/false."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Ident({str(self)})"


_TRUE = {"true", "True", "t"}
_FALSE = {"false", "False", "f"}


class Message:
    """One protobuf message: field name -> every value given for it, in order."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: dict[str, list[Any]] = {}

    def add(self, name: str, value: Any) -> None:
        self.fields.setdefault(name, []).append(value)

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def all(self, name: str) -> list[Any]:
        """Every value of a (repeated) field; [] when absent."""
        return list(self.fields.get(name, ()))

    def get(self, name: str, default: Any = None) -> Any:
        """The value of a singular field (the last occurrence, as protobuf does), else default."""
        values = self.fields.get(name)
        return values[-1] if values else default

    def get_int(self, name: str, default: int | None = None) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return value

    def get_bool(self, name: str, default: bool = False) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, Ident) and str(value) in _TRUE | _FALSE:
            return str(value) in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{name} must be true or false, got {value!r}")

    def messages(self, name: str) -> list[Message]:
        """The message values of a field (a scalar given where a message belongs is an error)."""
        out = []
        for value in self.fields.get(name, ()):
            if not isinstance(value, Message):
                raise ValueError(f"{name} must be a message {{ ... }}, got {value!r}")
            out.append(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data: nested dicts, lists for fields given more than once or as a list."""

        def plain(value: Any) -> Any:
            if isinstance(value, Message):
                return value.to_dict()
            if isinstance(value, Ident):
                return str(value)
            return value

        return {
            name: plain(values[0]) if len(values) == 1 else [plain(v) for v in values]
            for name, values in self.fields.items()
        }

    def __repr__(self) -> str:
        return f"Message({self.to_dict()!r})"


# ---- tokenizer ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str  # "ident" | "number" | "string" | "punct" | "eof"
    value: Any
    line: int
    column: int


_PUNCT = set("{}[]<>:,;")
_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
    "\\": "\\", "'": "'", '"': '"', "?": "?",
}  # fmt: skip


def _tokens(text: str) -> Iterator[_Token]:
    i, line, line_start, n = 0, 1, 0, len(text)
    while i < n:
        ch = text[i]
        column = i - line_start + 1
        if ch == "\n":
            i += 1
            line += 1
            line_start = i
        elif ch in " \t\r\f\v":
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch in _PUNCT:
            yield _Token("punct", ch, line, column)
            i += 1
        elif ch in "\"'":
            quote, i, chars = ch, i + 1, []
            while True:
                if i >= n or text[i] == "\n":
                    raise PbtxtError("unterminated string", line, column)
                c = text[i]
                if c == quote:
                    i += 1
                    break
                if c == "\\":
                    if i + 1 >= n:
                        raise PbtxtError("unterminated string", line, column)
                    e = text[i + 1]
                    if e in _ESCAPES:
                        chars.append(_ESCAPES[e])
                        i += 2
                    elif e in "01234567":
                        j = i + 1
                        while j < n and j < i + 4 and text[j] in "01234567":
                            j += 1
                        chars.append(chr(int(text[i + 1 : j], 8)))
                        i = j
                    elif e in "xX":
                        j = i + 2
                        while j < n and j < i + 4 and text[j] in "0123456789abcdefABCDEF":
                            j += 1
                        if j == i + 2:
                            raise PbtxtError("invalid \\x escape", line, i - line_start + 1)
                        chars.append(chr(int(text[i + 2 : j], 16)))
                        i = j
                    else:
                        raise PbtxtError(f"invalid escape \\{e}", line, i - line_start + 1)
                else:
                    chars.append(c)
                    i += 1
            yield _Token("string", "".join(chars), line, column)
        elif ch.isdigit() or ch in "-+." and i + 1 < n and (text[i + 1].isalnum() or text[i + 1] == "."):
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "._" or (text[j] in "+-" and text[j - 1] in "eE")):
                j += 1
            raw = text[i:j]
            yield _Token("number", _number(raw, line, column), line, column)
            i = j
        elif ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            yield _Token("ident", text[i:j], line, column)
            i = j
        else:
            raise PbtxtError(f"unexpected character {ch!r}", line, column)
    yield _Token("eof", None, line, i - line_start + 1)


def _number(raw: str, line: int, column: int) -> int | float:
    sign = -1 if raw.startswith("-") else 1
    body = raw.lstrip("+-")
    low = body.lower()
    if low in ("inf", "infinity", "nan"):
        return sign * float(low)
    try:
        if low.startswith("0x"):
            return sign * int(body[2:], 16)
        if low.isdigit():
            if len(body) > 1 and body.startswith("0"):
                return sign * int(body, 8)  # protobuf reads a leading 0 as octal
            return sign * int(body)
        if low.endswith("f") and not low.startswith("0x"):
            body = body[:-1]
        return sign * float(body)
    except ValueError:
        raise PbtxtError(f"invalid number {raw!r}", line, column) from None


# ---- parser -----------------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str):
        self.tokens = list(_tokens(text))
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def next(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def error(self, message: str, token: _Token | None = None) -> PbtxtError:
        token = token or self.peek()
        return PbtxtError(message, token.line, token.column)

    def accept(self, punct: str) -> bool:
        token = self.peek()
        if token.kind == "punct" and token.value == punct:
            self.pos += 1
            return True
        return False

    def message(self, close: str | None) -> Message:
        msg = Message()
        while True:
            token = self.peek()
            if close is None and token.kind == "eof":
                return msg
            if close is not None and token.kind == "punct" and token.value == close:
                self.pos += 1
                return msg
            if token.kind == "eof":
                raise self.error(f"the file ends inside a message (missing '{close}')")
            if token.kind != "ident":
                what = repr(token.value) if token.kind != "eof" else "end of file"
                if token.kind == "punct" and token.value == "[":
                    raise self.error("extension fields ([...]) are not supported in a Triton config")
                raise self.error(f"expected a field name, found {what}")
            self.next()
            self.field(msg, token.value, token)
            # Fields may be separated by ',' or ';' (both optional).
            if not self.accept(","):
                self.accept(";")

    def field(self, msg: Message, name: str, name_token: _Token) -> None:
        colon = self.accept(":")
        token = self.peek()
        if token.kind == "punct" and token.value in "{<":
            self.next()
            msg.add(name, self.message("}" if token.value == "{" else ">"))
        elif token.kind == "punct" and token.value == "[":
            self.next()
            if self.accept("]"):
                msg.fields.setdefault(name, [])
                return
            while True:
                msg.add(name, self.list_element())
                if self.accept("]"):
                    return
                if self.peek().kind == "eof":
                    raise self.error(f"the file ends inside the list of {name!r} (missing ']')")
                if not self.accept(","):
                    raise self.error(f"expected ',' or ']' in the list of {name!r}")
        else:
            if not colon:
                raise self.error(f"expected ':' after field name {name!r}")
            msg.add(name, self.scalar(name))

    def list_element(self) -> Any:
        token = self.peek()
        if token.kind == "punct" and token.value in "{<":
            self.next()
            return self.message("}" if token.value == "{" else ">")
        return self.scalar("list")

    def scalar(self, name: str) -> Any:
        token = self.next()
        if token.kind == "string":
            value = token.value
            while self.peek().kind == "string":  # adjacent strings concatenate
                value += self.next().value
            return value
        if token.kind == "number":
            return token.value
        if token.kind == "ident":
            low = token.value.lower()
            if low in ("inf", "infinity", "nan"):
                return float(low)
            return Ident(token.value)
        what = "end of file" if token.kind == "eof" else repr(token.value)
        raise self.error(f"expected a value for {name!r}, found {what}", token)


def parse(text: str) -> Message:
    """Parse protobuf text format into a :class:`Message`; raises :class:`PbtxtError`."""
    return _Parser(text).message(None)


def parse_file(path) -> Message:
    from pathlib import Path

    return parse(Path(path).read_text(encoding="utf-8"))


# ---- Triton's schema (optional) -------------------------------------------------------------------
_PB2 = "tritonclient.grpc.model_config_pb2"


def _model_config_module():
    """tritonclient's generated ``model_config_pb2`` without importing grpc (None if absent)."""
    if _PB2 in sys.modules:
        return sys.modules[_PB2]
    try:
        if importlib.util.find_spec("google.protobuf") is None:
            return None
        spec = importlib.util.find_spec("tritonclient")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    from pathlib import Path

    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        return None
    # Loaded by path: importing tritonclient.grpc would import grpc, which repo check does not
    # need. Registered under its real name so a later `import tritonclient.grpc` reuses it
    # (protobuf refuses to register the same .proto file twice).
    module_spec = importlib.util.spec_from_file_location(_PB2, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception:  # an incompatible protobuf runtime: fall back to the plain parser
        return None
    sys.modules[_PB2] = module
    return module


def schema_available() -> bool:
    return _model_config_module() is not None


def schema_error(text: str) -> str | None:
    """Triton's own verdict on the text (``'3:5 : Message type ... has no field named "x"'``).

    None when the text is a valid ``inference.ModelConfig`` or when the schema is not installed
    (check :func:`schema_available`).
    """
    module = _model_config_module()
    if module is None:
        return None
    from google.protobuf import text_format

    try:
        text_format.Parse(text, module.ModelConfig())
    except text_format.ParseError as exc:
        return str(exc)
    return None

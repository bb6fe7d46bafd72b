"""The ``--where`` expression language: filter run records (``runsync runs``, ``runsync.runs(where=)``).

A tokenizer and a recursive-descent parser build a small AST; :func:`compile_query`
turns it into one Python closure per node, evaluated per record. Nothing is ever
passed to ``eval``: an expression can only compare columns with literals and
combine the results with ``and``, ``or`` and ``not``. Everything else (function
calls, arithmetic, comparing two columns, unknown columns) is rejected with a
:class:`QueryError` that shows the expression with a caret under the fault.

Grammar (EBNF; keywords are case-insensitive)::

    query      = expr EOF ;
    expr       = and_expr { "or" and_expr } ;
    and_expr   = not_expr { "and" not_expr } ;
    not_expr   = "not" not_expr | "(" expr ")" | predicate ;
    predicate  = column ( cmp_op value
                        | [ "not" ] "in" list
                        | [ "not" ] "contains" value
                        | "is" [ "not" ] "null" ) ;
    cmp_op     = "=" | "==" | "!=" | "<" | "<=" | ">" | ">=" | "~" | "!~" ;
    list       = ( "[" | "(" ) [ value { "," value } [ "," ] ] ( "]" | ")" ) ;
    value      = string | number | duration [ "ago" ] | date | "true" | "false" | "null" | bare_word ;
    column     = word | "`" { any character but "`" } "`" ;
    string     = "'" { char | "\\" any } "'" | '"' { char | "\\" any } '"' ;
    number     = [ "+" | "-" ] ( digits [ "." [ digits ] ] | "." digits ) [ ( "e" | "E" ) [ "+" | "-" ] digits ] ;
    duration   = digits [ "." digits ] ( "ms" | "s" | "m" | "h" | "d" | "w" ) ;
    date       = YYYY "-" MM "-" DD [ "T" hh ":" mm [ ":" ss [ "." digits ] ] [ "Z" | ( "+" | "-" ) hh [ ":" ] mm ] ] ;
    word       = { any character but whitespace and ( ) [ ] , = ! < > ~ ' " ` }- ;

A ``word`` in value position is a number, duration or date when it reads as one,
else a bare string (``status = finished``); a bare word that names a column is
refused (comparing two columns is not supported: quote it to mean the string).

Semantics, per record (a missing column and a JSON ``null`` are both *null*):

- ``=``/``==`` is true when the cell and the value are the same kind (number,
  string or bool) and equal; ``!=`` when the cell is not null and not ``=``.
  ``= null`` / ``!= null`` mean ``is null`` / ``is not null``.
- ``< <= > >=`` compare numbers with numbers and strings with strings; any other
  pair (a number with a string, a missing value, NaN) is false, never an error.
- ``~`` / ``!~`` search a regular expression (Python ``re.search``) in a string
  cell, or in any string element of a list cell; other cells are false.
- ``in [..]`` is true when the cell equals one of the values (a list cell: when
  one of its elements does); ``null`` in the list matches null cells;
  ``not in`` is true when the cell is not null and not ``in``.
- ``contains`` is a substring test on a string cell and a membership test on a
  list cell (``tags contains baseline``); ``not contains`` is its negation on a
  string or list cell.
- ``is null`` / ``is not null`` test for a missing or null cell.
- On time columns (``created``, ``start``: Unix seconds) a date is converted to
  Unix time (UTC unless it has an offset) and ``2d ago`` means that long before
  now; elsewhere a duration is a number of seconds (``duration > 1h``).
"""

from __future__ import annotations

import calendar
import datetime as _dt
import difflib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..format.errors import RunsyncError

__all__ = [
    "MAX_DEPTH",
    "MISSING",
    "And",
    "Compare",
    "Contains",
    "InList",
    "IsNull",
    "Literal",
    "Node",
    "Not",
    "Or",
    "Query",
    "QueryError",
    "check_column",
    "compile_query",
    "parse",
    "tokenize",
]

MAX_DEPTH = 100  # nesting of parentheses and "not": deeper is refused, not a RecursionError


class QueryError(RunsyncError, ValueError):
    """An expression that is not in the language, or names an unknown column.

    ``str()`` is the message followed by the expression and a caret under ``pos``.
    """

    def __init__(self, message: str, expr: str | None = None, pos: int | None = None) -> None:
        self.message = message
        self.expr = expr
        self.pos = pos
        text = message
        if expr is not None and pos is not None:
            text += f"\n  {expr}\n  {' ' * _display_width(expr[:pos])}^"
        super().__init__(text)


def _display_width(s: str) -> int:
    return len(s.expandtabs(1))


class _Missing:
    """The value of a column a record does not have (distinct from JSON null, but tested alike)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

# -- tokens -------------------------------------------------------------------------------------

_OPS = ("==", "!=", "<=", ">=", "!~", "=", "<", ">", "~")
_PUNCT = {"(": "LP", ")": "RP", "[": "LB", "]": "RB", ",": "COMMA"}
_WORD_STOP = set(" \t\r\n\f\v()[],=!<>~'\"`")
_KEYWORDS = {"and", "or", "not", "in", "contains", "is", "null", "true", "false"}
_ARITH = {"+", "-", "*", "/", "%", "**", "//"}

_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DATE_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?"
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True)
class Token:
    kind: str  # WORD STRING COLUMN OP LP RP LB RB COMMA EOF
    text: str  # the value (unquoted for STRING and COLUMN)
    pos: int  # offset of the token's first character in the expression
    end: int


def tokenize(expr: str) -> list[Token]:
    """Split ``expr`` into tokens (the last one EOF); QueryError on a character that starts none."""
    out: list[Token] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
            continue
        if c in _PUNCT:
            out.append(Token(_PUNCT[c], c, i, i + 1))
            i += 1
            continue
        op = next((o for o in _OPS if expr.startswith(o, i)), None)
        if op is not None:
            out.append(Token("OP", op, i, i + len(op)))
            i += len(op)
            continue
        if c == "!":
            raise QueryError("unexpected '!' (use 'not', '!=' or '!~')", expr, i)
        if c in "'\"":
            text, j = _read_string(expr, i)
            out.append(Token("STRING", text, i, j))
            i = j
            continue
        if c == "`":
            j = expr.find("`", i + 1)
            if j < 0:
                raise QueryError("unterminated `quoted column`", expr, i)
            if j == i + 1:
                raise QueryError("empty `quoted column`", expr, i)
            out.append(Token("COLUMN", expr[i + 1:j], i, j + 1))
            i = j + 1
            continue
        j = i
        while j < n and expr[j] not in _WORD_STOP and not expr[j].isspace():
            j += 1
        out.append(Token("WORD", expr[i:j], i, j))
        i = j
    out.append(Token("EOF", "", n, n))
    return out


def _read_string(expr: str, start: int) -> tuple[str, int]:
    quote = expr[start]
    buf: list[str] = []
    i = start + 1
    while i < len(expr):
        c = expr[i]
        if c == quote:
            return "".join(buf), i + 1
        if c == "\\" and i + 1 < len(expr):
            nxt = expr[i + 1]
            if nxt in (quote, "\\"):
                buf.append(nxt)
            elif nxt == "n":
                buf.append("\n")
            elif nxt == "t":
                buf.append("\t")
            else:  # keep regex escapes such as \d as they are
                buf.append(c + nxt)
            i += 2
            continue
        buf.append(c)
        i += 1
    raise QueryError("unterminated string", expr, start)


# -- AST ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """A value as written. ``kind``: number, string, bare, bool, null, date, duration, ago."""

    value: Any
    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class Compare:
    column: str
    op: str  # "=", "!=", "<", "<=", ">", ">=", "~", "!~" ("==" is stored as "=")
    value: Literal
    pos: int


@dataclass(frozen=True)
class InList:
    column: str
    values: tuple[Literal, ...]
    negated: bool
    pos: int


@dataclass(frozen=True)
class Contains:
    column: str
    value: Literal
    negated: bool
    pos: int


@dataclass(frozen=True)
class IsNull:
    column: str
    negated: bool
    pos: int


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Compare | InList | Contains | IsNull | And | Or | Not


# -- parser -------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = tokenize(expr)
        self.i = 0
        self.depth = 0

    # helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_kw(self, *words: str, tok: Token | None = None) -> bool:
        t = tok or self.tok
        return t.kind == "WORD" and t.text.lower() in words

    def fail(self, message: str, tok: Token | None = None) -> QueryError:
        t = tok or self.tok
        return QueryError(message, self.expr, t.pos)

    def describe(self, t: Token) -> str:
        if t.kind == "EOF":
            return "the end of the expression"
        if t.kind == "STRING":
            return f"string {self.expr[t.pos:t.end]}"
        return f"'{self.expr[t.pos:t.end]}'"

    # grammar
    def parse(self) -> Node:
        if self.tok.kind == "EOF":
            raise self.fail("empty expression (example: status = finished and summary.loss < 0.1)")
        node = self.or_expr()
        if self.tok.kind != "EOF":
            t = self.tok
            if t.kind == "RP":
                raise self.fail("unmatched ')'")
            raise self.fail(f"expected 'and', 'or' or the end of the expression, found {self.describe(t)}")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.is_kw("or"):
            self.next()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.is_kw("and"):
            self.next()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"expression nested more than {MAX_DEPTH} deep")
        try:
            if self.is_kw("not"):
                self.next()
                return Not(self.not_expr())
            if self.tok.kind == "LP":
                open_tok = self.next()
                node = self.or_expr()
                if self.tok.kind != "RP":
                    if self.tok.kind == "EOF":
                        raise self.fail("unclosed '('", open_tok)
                    raise self.fail(f"expected ')', 'and' or 'or', found {self.describe(self.tok)}")
                self.next()
                return node
            return self.predicate()
        finally:
            self.depth -= 1

    def column(self) -> tuple[str, Token]:
        t = self.tok
        if t.kind == "COLUMN":
            self.next()
            return t.text, t
        if t.kind != "WORD":
            if t.kind == "EOF":
                raise self.fail("expected a column name, found the end of the expression (example: status = finished)")
            raise self.fail(f"expected a column name, found {self.describe(t)}")
        if t.text.lower() in _KEYWORDS:
            raise self.fail(f"expected a column name, found the keyword '{t.text}'")
        if _NUMBER_RE.fullmatch(t.text) or t.text in _ARITH:
            raise self.fail(f"expected a column name, found {self.describe(t)} (a predicate is: COLUMN OP VALUE)")
        self.next()
        return t.text, t

    def predicate(self) -> Node:
        col, ctok = self.column()
        t = self.tok
        if t.kind == "OP":
            self.next()
            op = "=" if t.text == "==" else t.text
            return Compare(col, op, self.value(), ctok.pos)
        negated = False
        if self.is_kw("not"):
            nxt = self.toks[self.i + 1]
            if not self.is_kw("in", "contains", tok=nxt):
                raise self.fail(f"expected 'in' or 'contains' after 'not', found {self.describe(nxt)}", nxt)
            self.next()
            negated = True
        if self.is_kw("in"):
            self.next()
            return InList(col, self.list_(), negated, ctok.pos)
        if self.is_kw("contains"):
            self.next()
            return Contains(col, self.value(), negated, ctok.pos)
        if self.is_kw("is"):
            self.next()
            neg = False
            if self.is_kw("not"):
                self.next()
                neg = True
            if not self.is_kw("null"):
                raise self.fail(f"expected 'null' after 'is{' not' if neg else ''}', found {self.describe(self.tok)}")
            self.next()
            return IsNull(col, neg, ctok.pos)
        if t.kind == "LP":
            raise self.fail(f"function calls are not supported ('{col}(...)'); write COLUMN OP VALUE")
        if t.kind == "WORD" and t.text in _ARITH:
            raise self.fail(f"arithmetic is not supported ('{t.text}'); compare a column with a value")
        raise self.fail(f"expected an operator (= != < <= > >= ~ !~ in contains is) after '{col}', "
                        f"found {self.describe(t)}")

    def list_(self) -> tuple[Literal, ...]:
        t = self.tok
        if t.kind not in ("LB", "LP"):
            raise self.fail(f"expected '[' to start a list after 'in', found {self.describe(t)} "
                            "(example: status in [finished, failed])")
        close = "RB" if t.kind == "LB" else "RP"
        self.next()
        items: list[Literal] = []
        while True:
            if self.tok.kind == close:
                self.next()
                return tuple(items)
            items.append(self.value())
            if self.tok.kind == "COMMA":
                self.next()
                continue
            if self.tok.kind != close:
                want = "']'" if close == "RB" else "')'"
                if self.tok.kind == "EOF":
                    raise self.fail(f"unclosed list: expected ',' or {want}", t)
                raise self.fail(f"expected ',' or {want} in the list, found {self.describe(self.tok)}")

    def value(self) -> Literal:
        t = self.tok
        if t.kind == "STRING":
            self.next()
            return Literal(t.text, "string", t.text, t.pos)
        if t.kind != "WORD":
            if t.kind == "COLUMN":
                raise self.fail("comparing two columns is not supported; a value must be a literal")
            if t.kind == "EOF":
                raise self.fail("expected a value, found the end of the expression")
            raise self.fail(f"expected a value, found {self.describe(t)}")
        self.next()
        text, low = t.text, t.text.lower()
        if low in ("true", "false"):
            return Literal(low == "true", "bool", text, t.pos)
        if low == "null":
            return Literal(None, "null", text, t.pos)
        if low in _KEYWORDS:
            raise self.fail(f"expected a value, found the keyword '{text}' (quote it to mean the string)", t)
        if _NUMBER_RE.fullmatch(text):
            num = float(text)
            if re.fullmatch(r"[+-]?\d+", text):
                num = int(text)
            return Literal(num, "number", text, t.pos)
        m = _DURATION_RE.fullmatch(text)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
            if self.is_kw("ago"):
                self.next()
                return Literal(seconds, "ago", text + " ago", t.pos)
            return Literal(seconds, "duration", text, t.pos)
        if _DATE_RE.fullmatch(text):
            return Literal(text, "date", text, t.pos)
        if text in _ARITH:
            raise self.fail(f"arithmetic is not supported ('{text}')", t)
        if self.tok.kind == "LP":
            raise self.fail(f"function calls are not supported ('{text}(...)')", t)
        return Literal(text, "bare", text, t.pos)


def parse(expr: str) -> Node:
    """The AST of ``expr``; QueryError (with the position) if it is not in the language."""
    if not isinstance(expr, str):
        raise QueryError(f"an expression must be a string, got {type(expr).__name__}")
    return _Parser(expr).parse()


# -- compiling ----------------------------------------------------------------------------------


def _columns_of(node: Node) -> list[tuple[str, int]]:
    if isinstance(node, (And, Or)):
        return [c for item in node.items for c in _columns_of(item)]
    if isinstance(node, Not):
        return _columns_of(node.item)
    return [(node.column, node.pos)]


def _literals_of(node: Node) -> list[Literal]:
    if isinstance(node, (And, Or)):
        return [v for item in node.items for v in _literals_of(item)]
    if isinstance(node, Not):
        return _literals_of(node.item)
    if isinstance(node, (Compare, Contains)):
        return [node.value]
    if isinstance(node, InList):
        return list(node.values)
    return []


def check_column(name: str, known: Iterable[str], expr: str | None = None, pos: int | None = None,
                 what: str = "column") -> None:
    """Raise QueryError for a name not in ``known``, suggesting the closest known name."""
    known = list(known)
    if name in known:
        return
    close = [k for k in known if k.lower() == name.lower()] or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    if not close:
        prefixes = sorted({k.split(".", 1)[0] + "." for k in known if "." in k})
        hint = f" (columns: {', '.join(k for k in known if '.' not in k)}, and {', '.join(p + '*' for p in prefixes)})" \
            if prefixes else ""
    raise QueryError(f"unknown {what} '{name}'{hint}", expr, pos)


def _kind(v: Any) -> str | None:
    if v is None or v is MISSING:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple)):
        return "list"
    return "other"


def _null(v: Any) -> bool:
    return v is None or v is MISSING


def _eq(cell: Any, value: Any) -> bool:
    k = _kind(cell)
    return k is not None and k == _kind(value) and k != "list" and cell == value


def _parse_date(text: str) -> float:
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise ValueError(text)
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    dt = _dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
    seconds = calendar.timegm(dt.timetuple()) + (float(frac) if frac else 0.0)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return float(seconds)


Pred = Callable[[Mapping[str, Any]], bool]


@dataclass
class Query:
    """A compiled expression: ``matches(record)`` and the columns it reads."""

    expr: str
    ast: Node
    columns: list[str]
    _pred: Pred

    def matches(self, record: Mapping[str, Any]) -> bool:
        return self._pred(record)

    def __call__(self, record: Mapping[str, Any]) -> bool:
        return self._pred(record)

    def filter(self, records: Iterable[Mapping[str, Any]]) -> list[Any]:
        return [r for r in records if self._pred(r)]


class _Compiler:
    def __init__(self, expr: str, time_columns: frozenset[str], list_columns: frozenset[str],
                 enums: Mapping[str, tuple[str, ...]], now: float) -> None:
        self.expr = expr
        self.time_columns = time_columns
        self.list_columns = list_columns
        self.enums = enums
        self.now = now

    def fail(self, message: str, pos: int) -> QueryError:
        return QueryError(message, self.expr, pos)

    def literal(self, column: str, lit: Literal, regex: bool = False) -> Any:
        """The value ``lit`` stands for when compared with ``column``."""
        if column in self.time_columns and not regex:
            if lit.kind == "date":
                try:
                    return _parse_date(lit.text)
                except ValueError:
                    raise self.fail(f"invalid date '{lit.text}'", lit.pos) from None
            if lit.kind == "ago":
                return self.now - lit.value
            if lit.kind == "duration":
                raise self.fail(f"'{column}' is a time: did you mean '{lit.text} ago'?", lit.pos)
            if lit.kind in ("string", "bare"):
                try:
                    return _parse_date(lit.value)
                except ValueError:
                    raise self.fail(f"'{column}' is a time: compare it with a date (2024-05-01, "
                                    "2024-05-01T12:00Z), Unix seconds, or a duration with 'ago' (2d ago)",
                                    lit.pos) from None
        elif lit.kind == "ago":
            raise self.fail(f"'ago' only applies to the time columns ({', '.join(sorted(self.time_columns))})",
                            lit.pos)
        if column in self.enums and lit.kind in ("string", "bare") and not regex:
            allowed = self.enums[column]
            if lit.value not in allowed:
                close = difflib.get_close_matches(lit.value, allowed, n=1, cutoff=0.5)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise self.fail(f"'{column}' is one of {', '.join(allowed)}: no value '{lit.value}'{hint}", lit.pos)
        return lit.value

    def compile(self, node: Node) -> Pred:
        if isinstance(node, And):
            preds = [self.compile(n) for n in node.items]
            return lambda r: all(p(r) for p in preds)
        if isinstance(node, Or):
            preds = [self.compile(n) for n in node.items]
            return lambda r: any(p(r) for p in preds)
        if isinstance(node, Not):
            pred = self.compile(node.item)
            return lambda r: not pred(r)
        col = node.column
        if isinstance(node, IsNull):
            if node.negated:
                return lambda r: not _null(r.get(col, MISSING))
            return lambda r: _null(r.get(col, MISSING))
        if isinstance(node, InList):
            return self.in_list(node)
        if isinstance(node, Contains):
            return self.contains(node)
        return self.compare(node)

    def compare(self, node: Compare) -> Pred:
        col, op, lit = node.column, node.op, node.value
        if lit.kind == "null":
            if op == "=":
                return lambda r: _null(r.get(col, MISSING))
            if op == "!=":
                return lambda r: not _null(r.get(col, MISSING))
            raise self.fail(f"'{op} null' is always false; use 'is null' or 'is not null'", lit.pos)
        if col in self.list_columns and op in ("=", "!="):
            raise self.fail(f"'{col}' is a list; use '{col} contains {lit.text}' or '{col} in [...]'", node.pos)
        value = self.literal(col, lit, regex=op in ("~", "!~"))
        if op in ("~", "!~"):
            pattern = value if isinstance(value, str) else lit.text
            try:
                rx = re.compile(pattern)
            except re.error as e:
                raise self.fail(f"invalid regular expression: {e}", lit.pos) from None
            search = rx.search

            def matches(cell: Any) -> bool | None:
                if isinstance(cell, str):
                    return search(cell) is not None
                if isinstance(cell, (list, tuple)):
                    return any(isinstance(x, str) and search(x) is not None for x in cell)
                return None

            if op == "~":
                return lambda r: matches(r.get(col, MISSING)) is True
            return lambda r: matches(r.get(col, MISSING)) is False
        if op == "=":
            return lambda r: _eq(r.get(col, MISSING), value)
        if op == "!=":
            return lambda r: not _null(c := r.get(col, MISSING)) and not _eq(c, value)
        kind = _kind(value)
        if kind not in ("num", "str"):
            raise self.fail(f"'{op}' compares numbers or strings, not {lit.kind} {lit.text}", lit.pos)
        cmp = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
               ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}[op]

        def ordered(r: Mapping[str, Any]) -> bool:
            c = r.get(col, MISSING)
            return _kind(c) == kind and bool(cmp(c, value))

        return ordered

    def in_list(self, node: InList) -> Pred:
        col = node.column
        values = [self.literal(col, v) for v in node.values if v.kind != "null"]
        with_null = any(v.kind == "null" for v in node.values)

        def member(c: Any) -> bool:
            if isinstance(c, (list, tuple)):
                return any(_eq(x, v) for x in c for v in values)
            return any(_eq(c, v) for v in values)

        if node.negated:
            return lambda r: not _null(c := r.get(col, MISSING)) and not member(c)
        return lambda r: (with_null and _null(c := r.get(col, MISSING))) or member(r.get(col, MISSING))

    def contains(self, node: Contains) -> Pred:
        col, lit = node.column, node.value
        if lit.kind == "null":
            raise self.fail("'contains null' is not supported; use 'is null'", lit.pos)
        value = lit.value
        text = value if isinstance(value, str) else lit.text

        def test(c: Any) -> bool | None:
            if isinstance(c, str):
                return text in c
            if isinstance(c, (list, tuple)):
                return any(_eq(x, value) or (isinstance(x, str) and x == text) for x in c)
            return None

        if node.negated:
            return lambda r: test(r.get(col, MISSING)) is False
        return lambda r: test(r.get(col, MISSING)) is True


def compile_query(
    expr: str,
    columns: Iterable[str] | None = None,
    *,
    time_columns: Iterable[str] = ("created", "start"),
    list_columns: Iterable[str] = ("tags",),
    enums: Mapping[str, tuple[str, ...]] | None = None,
    now: float | None = None,
) -> Query:
    """Parse and compile ``expr``.

    ``columns``: the known column names; any other column is refused with a
    suggestion (None: accept any). ``time_columns`` hold Unix seconds and accept
    dates and ``2d ago``; ``list_columns`` refuse ``=`` (use ``contains``);
    ``enums`` maps a column to its allowed string values (``status``).
    """
    ast = parse(expr)
    refs = _columns_of(ast)
    if columns is not None:
        known = set(columns)
        for name, pos in refs:
            if name not in known:
                check_column(name, sorted(known), expr, pos)
    known_cols = set(columns) if columns is not None else None
    for lit in _literals_of(ast):
        if lit.kind == "bare" and known_cols is not None and lit.value in known_cols:
            raise QueryError(f"'{lit.value}' is a column: comparing two columns is not supported; "
                             f"quote it to mean the string ('{lit.value}')", expr, lit.pos)
    comp = _Compiler(expr, frozenset(time_columns), frozenset(list_columns), enums or {},
                     time.time() if now is None else now)
    pred = comp.compile(ast)
    seen: dict[str, None] = {}
    for name, _pos in refs:
        seen.setdefault(name, None)
    return Query(expr, ast, list(seen), pred)

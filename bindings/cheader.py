"""A parser for the disciplined declaration style of include/fibration.h.

The header promises a small C subset, and this parser accepts exactly that
subset and fails loudly on anything else, so that a new kind of declaration
is noticed when the bindings are regenerated rather than silently dropped:

  * constants:   #define FIB_NAME <integer, float or string expression>
  * handles:     typedef struct fib_x fib_x;
  * structs:     typedef struct fib_x { <type> <field>[ [N] ]; ... } fib_x;
  * callbacks:   typedef <ret> (*fib_x_fn)(<params>);
  * aliases:     typedef <type> fib_x;
  * functions:   FIB_API <ret> fib_name(<params>);   (possibly over lines)

Types are fixed-width integers, size_t, float, double, char, void, the
handles, structs, callbacks and aliases above, with `const` and `*`.
Code inside `#ifdef __cplusplus` blocks is skipped; everything else in the
file (including experimental sections behind other #if macros) is read.
"""

import re
from dataclasses import dataclass, field
from typing import List, Optional

SCALARS = {
    "void", "char", "float", "double", "size_t",
    "int8_t", "int16_t", "int32_t", "int64_t",
    "uint8_t", "uint16_t", "uint32_t", "uint64_t",
}


class HeaderError(Exception):
    pass


@dataclass
class CType:
    base: str                 # "int32_t", "fib_graph", ...
    base_const: bool = False  # const applies to the base type
    # one entry per '*', outermost last: True if that pointer is itself const
    pointers: List[bool] = field(default_factory=list)
    array: Optional[int] = None  # fixed array length for struct fields

    @property
    def depth(self):
        return len(self.pointers)

    def pointee_is_const(self, level):
        """Whether the object that pointer number `level` (0 = innermost)
        points to is const."""
        return self.base_const if level == 0 else self.pointers[level - 1]

    def c_spelling(self):
        s = ("const " if self.base_const else "") + self.base
        for const in self.pointers:
            s += " *" + (" const" if const else "")
        return s


@dataclass
class Param:
    name: str
    type: CType


@dataclass
class Constant:
    name: str
    value: object       # int, float or str
    ctype: str          # "i32", "u32", "i64", "u64", "f64", "str"
    doc: str = ""


@dataclass
class Opaque:
    name: str
    doc: str = ""


@dataclass
class Struct:
    name: str
    fields: List[Param]
    doc: str = ""


@dataclass
class Callback:
    name: str
    ret: CType
    params: List[Param]
    doc: str = ""


@dataclass
class Alias:
    name: str
    type: CType
    doc: str = ""


@dataclass
class Function:
    name: str
    ret: CType
    params: List[Param]
    doc: str = ""


@dataclass
class Header:
    constants: List[Constant] = field(default_factory=list)
    opaques: List[Opaque] = field(default_factory=list)
    structs: List[Struct] = field(default_factory=list)
    callbacks: List[Callback] = field(default_factory=list)
    aliases: List[Alias] = field(default_factory=list)
    functions: List[Function] = field(default_factory=list)
    # declaration order of the type-like items, for emitters that need it
    types_in_order: list = field(default_factory=list)

    def constant(self, name):
        for c in self.constants:
            if c.name == name:
                return c.value
        raise KeyError(name)


# --------------------------------------------------------------------------
# Lexical pass: comments, preprocessor lines, code declarations
# --------------------------------------------------------------------------

def _clean_comment(text):
    """The text of a /* */ or // comment without its markers and stars."""
    if text.startswith("/*"):
        text = text[2:-2]
    else:
        text = text[2:]
    lines = []
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith("*"):
            line = line[1:]
            if line.startswith(" "):
                line = line[1:]
        lines.append(line.rstrip())
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    # common indentation of continuation lines is kept: it carries formulas
    return "\n".join(lines)


def _scan(text):
    """Yields ('pp', line, trailing_comment) and ('decl', code, doc) items."""
    text = _drop_cplusplus_blocks(text.replace("\\\n", " "))
    i, n = 0, len(text)
    code = []
    doc = ""            # the comment block right before the current code
    last_comment = None  # (text, end offset)
    depth = 0
    at_line_start = True
    while i < n:
        c = text[i]
        if c == "\n":
            at_line_start = True
            code.append(c)
            i += 1
            continue
        if c in " \t\r":
            code.append(c)
            i += 1
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise HeaderError("unterminated comment")
            last_comment = (_clean_comment(text[i:j + 2]), j + 2)
            i = j + 2
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            last_comment = (_clean_comment(text[i:j]), j)
            i = j
            continue
        if c == "#" and at_line_start and not "".join(code).strip():
            j = text.find("\n", i)
            j = n if j < 0 else j
            line = text[i:j]
            opened = line.rfind("/*")
            if opened >= 0 and line.find("*/", opened) < 0:
                # a trailing comment that goes on over the next lines
                close = text.find("*/", i + opened)
                if close < 0:
                    raise HeaderError("unterminated comment")
                j = close + 2
                line = text[i:j].replace("\n", " ")
            trailing = ""
            m = re.search(r"/\*(.*?)\*/|//(.*)$", line)
            if m:
                trailing = " ".join((m.group(1) or m.group(2) or "").split())
                line = line[:m.start()]
            yield ("pp", line.strip(), trailing)
            code = []
            last_comment = None
            i = j
            continue
        at_line_start = False
        if not "".join(code).strip():
            # first code character of a declaration: attach the comment if
            # only whitespace (and at most one newline) separates them
            doc = ""
            if last_comment is not None:
                gap = text[last_comment[1]:i]
                if not gap.strip() and gap.count("\n") <= 1:
                    doc = last_comment[0]
            last_comment = None
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            code.append(text[i:j + 1])
            i = j + 1
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        code.append(c)
        i += 1
        if c == ";" and depth == 0:
            yield ("decl", " ".join("".join(code).split()), doc)
            code = []
            doc = ""
    if "".join(code).strip():
        raise HeaderError("trailing code without ';': %r" % "".join(code).strip())


def _drop_cplusplus_blocks(text):
    """Removes the lines of `#ifdef __cplusplus` ... `#endif` blocks (the
    extern "C" wrapper), keeping line structure elsewhere."""
    out, depth = [], 0
    for line in text.split("\n"):
        stripped = line.strip()
        if depth:
            if re.match(r"#\s*if", stripped):
                depth += 1
            elif re.match(r"#\s*endif", stripped):
                depth -= 1
            out.append("")
            continue
        if re.fullmatch(r"#\s*ifdef\s+__cplusplus", stripped):
            depth = 1
            out.append("")
            continue
        out.append(line)
    return "\n".join(out)


# --------------------------------------------------------------------------
# Constant expressions
# --------------------------------------------------------------------------

_INT_RE = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)([uU]?[lL]{0,2}|[lL]{1,2}[uU]?)\b")


def _eval_constant(expr, known):
    """Evaluates a #define value. Returns (value, ctype) or None when the
    macro is not a constant (FIB_API, include guards, ...)."""
    expr = expr.strip()
    if not expr:
        return None
    m = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', expr)
    if m:
        return (bytes(m.group(1), "utf-8").decode("unicode_escape"), "str")
    unsigned = False
    wide = False

    def int_repl(mm):
        nonlocal unsigned, wide
        suffix = mm.group(2).lower()
        if "u" in suffix:
            unsigned = True
        if "l" in suffix:
            wide = True
        return str(int(mm.group(1), 0))

    float_like = re.fullmatch(r"\(?\s*[-+]?(\d+\.\d*|\.\d+|\d+[eE][-+]?\d+)([eE][-+]?\d+)?[fF]?\s*\)?", expr)
    if float_like:
        return (float(expr.strip("()").rstrip("fF")), "f64")

    def name_repl(mm):
        nonlocal unsigned, wide
        name = mm.group(0)
        if name not in known:
            raise KeyError(name)
        value, ctype = known[name]
        if ctype in ("str", "f64"):
            raise KeyError(name)
        if ctype.startswith("u"):
            unsigned = True
        if ctype.endswith("64"):
            wide = True
        return "(%d)" % value

    py = _INT_RE.sub(int_repl, expr)
    try:
        py = re.sub(r"\b[A-Za-z_]\w*\b", name_repl, py)
    except KeyError:
        return None
    if not re.fullmatch(r"[\d\s()+\-*/%<>|&^~]*", py):
        return None
    py = py.replace("/", "//")
    try:
        value = eval(py, {"__builtins__": {}}, {})  # digits and operators only
    except Exception:
        return None
    if not isinstance(value, int):
        return None
    if unsigned:
        ctype = "u64" if wide or value > 0xFFFFFFFF else "u32"
        value &= (1 << (64 if ctype == "u64" else 32)) - 1
    else:
        ctype = "i64" if wide or not (-2**31 <= value < 2**31) else "i32"
    return (value, ctype)


# --------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------

_IDENT = r"[A-Za-z_]\w*"


def _parse_type_and_name(text, type_names, need_name=True):
    """Parses 'const fib_graph *graph' into (name, CType)."""
    text = text.strip()
    array = None
    m = re.fullmatch(r"(.*?)\[\s*(\w+)\s*\]", text)
    if m:
        text, array = m.group(1).strip(), m.group(2)
    tokens = re.findall(r"\*|" + _IDENT, text)
    if "".join(tokens) != re.sub(r"\s+", "", text):
        raise HeaderError("cannot parse declaration %r" % text)
    name = None
    if need_name:
        if not tokens or tokens[-1] in ("*", "const") or len(tokens) < 2:
            raise HeaderError("parameter without a name: %r (every parameter "
                              "must be named)" % text)
        name = tokens.pop()
    base = None
    base_const = False
    pointers = []
    for tok in tokens:
        if tok == "const":
            if pointers:
                pointers[-1] = True
            else:
                base_const = True
        elif tok == "*":
            if base is None:
                raise HeaderError("'*' before a type in %r" % text)
            pointers.append(False)
        elif tok == "struct":
            continue
        else:
            if base is not None:
                raise HeaderError("type %r in %r is not one of the fixed-width "
                                  "types the bindings support" % (text, text))
            base = tok
    if base is None:
        raise HeaderError("no type in %r" % text)
    if base not in SCALARS and base not in type_names:
        raise HeaderError("unknown type %r in %r (use fixed-width integers, "
                          "size_t, double, or a type declared earlier)" % (base, text))
    return name, CType(base, base_const, pointers,
                       int(array, 0) if array is not None else None)


def _split_params(text):
    text = text.strip()
    if text in ("", "void"):
        return []
    return [p for p in text.split(",")]


def parse(text):
    header = Header()
    known = {}
    type_names = set()
    for kind, body, extra in _scan(text):
        if kind == "pp":
            directive = body.split(None, 1)
            word = directive[0].lstrip("#").strip() if directive else ""
            if word == "" and len(directive) > 1:
                directive = directive[1].split(None, 1)
                word = directive[0]
            rest = directive[1] if len(directive) > 1 else ""
            if word == "define":
                m = re.match(r"(" + _IDENT + r")(\s+(.*))?$", rest)
                if not m or "(" in m.group(1):
                    continue
                name, value = m.group(1), m.group(3) or ""
                if not name.startswith("FIB_") or name in known:
                    continue
                ev = _eval_constant(value, known)
                if ev is None:
                    continue
                known[name] = ev
                header.constants.append(Constant(name, ev[0], ev[1], extra))
            continue
        decl, doc = body.rstrip(";").strip(), extra
        _parse_decl(decl, doc, header, type_names)
    return header


def _parse_decl(decl, doc, header, type_names):
    m = re.fullmatch(r"typedef struct (%s) (%s)" % (_IDENT, _IDENT), decl)
    if m:
        if m.group(1) != m.group(2):
            raise HeaderError("typedef struct %s %s: names must agree" % m.groups())
        item = Opaque(m.group(1), doc)
        header.opaques.append(item)
        header.types_in_order.append(item)
        type_names.add(item.name)
        return
    m = re.fullmatch(r"typedef struct (%s) \{(.*)\} (%s)" % (_IDENT, _IDENT), decl)
    if m:
        if m.group(1) != m.group(3):
            raise HeaderError("typedef struct %s {...} %s: names must agree"
                              % (m.group(1), m.group(3)))
        fields = []
        for f in m.group(2).split(";"):
            if f.strip():
                name, ctype = _parse_type_and_name(f, type_names)
                fields.append(Param(name, ctype))
        item = Struct(m.group(1), fields, doc)
        header.structs.append(item)
        header.types_in_order.append(item)
        type_names.add(item.name)
        return
    m = re.fullmatch(r"typedef (.+?)\(\s*\*\s*(%s)\s*\)\s*\((.*)\)" % _IDENT, decl)
    if m:
        _, ret = _parse_type_and_name(m.group(1), type_names, need_name=False)
        params = [Param(*_parse_type_and_name(p, type_names))
                  for p in _split_params(m.group(3))]
        item = Callback(m.group(2), ret, params, doc)
        header.callbacks.append(item)
        header.types_in_order.append(item)
        type_names.add(item.name)
        return
    m = re.fullmatch(r"typedef (.+)", decl)
    if m:
        name, ctype = _parse_type_and_name(m.group(1), type_names)
        item = Alias(name, ctype, doc)
        header.aliases.append(item)
        header.types_in_order.append(item)
        type_names.add(name)
        return
    m = re.fullmatch(r"FIB_API (.+?)\b(fib_\w+)\s*\((.*)\)", decl)
    if m:
        _, ret = _parse_type_and_name(m.group(1), type_names, need_name=False)
        params = [Param(*_parse_type_and_name(p, type_names))
                  for p in _split_params(m.group(3))]
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise HeaderError("%s: repeated parameter name" % m.group(2))
        header.functions.append(Function(m.group(2), ret, params, doc))
        return
    raise HeaderError("declaration not in the header's style: %r" % decl)

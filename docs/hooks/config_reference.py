"""MkDocs hook: the configuration reference, generated from the config dataclasses (never written by hand).

``on_page_markdown`` replaces the line ``<!-- config-reference -->`` of a page with one section per field of
:class:`openmm_mlcg.train.config.TrainConfig` whose type is a dataclass (``data``, ``model``, ``score``, ...):
the class docstring, then a table of key, type and default. The walk is recursive: a field whose type is
itself a dataclass (or a list of / optional dataclass) gets its own nested section, named by its dotted YAML
path (``score.cg_langevin``, ``data.systems[]``). Defaults given by ``default_factory`` are evaluated.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path

MARKER = "<!-- config-reference -->"
ROOT = Path(__file__).resolve().parents[2]


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs event: expand the marker into the generated reference (pages without it are unchanged)."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, config_reference())


def config_reference() -> str:
    """Markdown of every section of ``TrainConfig``, nested sections after their parent."""
    if str(ROOT) not in sys.path:  # building from a checkout without ``pip install -e .``
        sys.path.insert(0, str(ROOT))
    from openmm_mlcg.train.config import TrainConfig

    out = [_paragraph(TrainConfig), ""]
    for f in dataclasses.fields(TrainConfig):
        cls = _dataclass_of(_hints(TrainConfig)[f.name])
        if cls is None:
            raise TypeError(f"TrainConfig.{f.name}: expected a section dataclass, got {f.type!r}")
        out += _section(f.name, cls, level=2)
    return "\n".join(out).rstrip() + "\n"


def _section(path: str, cls, level: int) -> list:
    """Heading, docstring and key table of one dataclass, then its nested dataclass fields as subsections."""
    lines = [f"{'#' * level} `{path}`", "", f"*{cls.__name__}*", "", _paragraph(cls), "",
             "| key | type | default |", "|---|---|---|"]
    nested = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        sub = _dataclass_of(tp)
        suffix = "[]" if typing.get_origin(tp) in (list, typing.List) else ""
        if sub is not None:
            nested.append((f"{path}.{f.name}{suffix}", sub))
            link = f"[`{path}.{f.name}{suffix}`](#{_anchor(path + '.' + f.name + suffix)})"
            default = f"`null`; keys: {link}" if f.default is None else f"see {link}"
        else:
            default = _cell(_default(f))
        lines.append(f"| `{f.name}` | {_cell(_type_name(tp))} | {default} |")
    lines.append("")
    for sub_path, sub in nested:
        lines += _section(sub_path, sub, min(level + 1, 6))
    return lines


def _hints(cls) -> dict:
    """Resolved field types (the config module uses ``from __future__ import annotations``)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an unresolvable annotation: show it as written
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _dataclass_of(tp):
    """The dataclass a field holds (directly, Optional[...] or List[...]), else None."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if arg is not type(None):
            found = _dataclass_of(arg)
            if found is not None:
                return found
    return None


def _type_name(tp) -> str:
    """YAML-level spelling: ``float or null``, ``list of str``."""
    if isinstance(tp, str):
        return tp
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin in (list, typing.List):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (dict, typing.Dict):
        return f"mapping {_type_name(args[0])} -> {_type_name(args[1])}" if args else "mapping"
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in args)
    if isinstance(tp, type):
        return {"NoneType": "null"}.get(tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def _default(f) -> str:
    """The field's default as YAML would spell it; evaluates ``default_factory``."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        try:
            value = f.default_factory()  # type: ignore[misc]
        except Exception as exc:  # pragma: no cover - a factory that needs arguments
            return f"(factory {getattr(f.default_factory, '__name__', '?')}: {type(exc).__name__})"
    else:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return "(section)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, (list, tuple)):
        return "`[]`" if not value else "`[" + ", ".join(map(str, value)) + "]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{value}`"


def _paragraph(cls) -> str:
    """The class docstring as Markdown: reST roles and double backticks become code spans."""
    doc = inspect.getdoc(cls) or ""
    doc = re.sub(r":(?:mod|func|class|meth|data|attr|obj):`~?([^`]+)`", r"`\1`", doc)
    doc = doc.replace("``", "`")
    return doc


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _anchor(path: str) -> str:
    """The id MkDocs' toc extension gives the heading ``path`` (code span stripped, slugified)."""
    return re.sub(r"[^\w-]", "", path.lower().replace(" ", "-"))

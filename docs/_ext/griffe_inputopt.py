"""Griffe extension for the documentation site: read the docstrings the way the project writes them.

The docstrings are Google style with three habits that Griffe's Google parser does not read as meant:

- ``Example:`` (singular) heads the doctest section; Griffe only knows ``Examples:``, and would render
  the ``>>>`` lines as Markdown (nested block quotes) instead of a highlighted console session.
- Sphinx roles (``:class:`~inputopt.objectives.Sum```, ``:meth:`forward```, ``:math:`1/f^p```) name
  other objects; they become links to the API reference where the name resolves to a documented
  object (an optional cross-reference: no warning when it is not rendered, e.g. a private module),
  and code otherwise.
- ``a, b, c: see :class:`ImageParam`.`` in ``Args:`` documents several parameters at once; it is
  split into one entry per name, so that every name is checked against the signature.

Only the text Griffe renders changes; the source files are untouched. Loaded by ``mkdocs.yml``
(``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", flags=re.MULTILINE)
_ROLE = re.compile(r":(?P<role>[a-z]+):`(?P<tilde>~?)(?P<name>[^`]+)`")
_SECTION = re.compile(r"^(\s*)([A-Z][A-Za-z ]*):\s*$")
_MULTI_PARAM = re.compile(r"^(?P<indent>\s+)(?P<names>\w+(?:\s*,\s*\w+)+)\s*:\s*(?P<text>.*)$")
_PARAM_SECTIONS = {"Args", "Arguments", "Parameters", "Params", "Other Parameters", "Keyword Args",
                   "Keyword Arguments"}


def _resolve(obj: griffe.Object | griffe.Alias, name: str) -> str | None:
    """The full path that ``name`` (possibly dotted) refers to from ``obj``'s scope, or ``None``."""
    if name.startswith("inputopt."):
        return name
    head, _, rest = name.partition(".")
    scope = obj if obj.is_class or obj.is_module else obj.parent
    try:
        path = scope.resolve(head) if scope is not None else None
    except (griffe.NameResolutionError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return f"{path}.{rest}" if path and rest else path


def _role(obj: griffe.Object | griffe.Alias, match: re.Match) -> str:
    role, name = match["role"], match["name"]
    shown = name.rsplit(".", 1)[-1] if match["tilde"] else name
    if role == "math" or role not in {"class", "func", "meth", "mod", "attr", "data", "exc", "obj"}:
        return f"`{name}`"
    path = _resolve(obj, name)
    if path is None:
        return f"`{shown}`"
    return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'


def _split_multi_params(text: str) -> str:
    """In parameter sections, ``a, b: text`` becomes ``a: text`` and ``b: text``."""
    lines, out, in_params = text.splitlines(), [], False
    for line in lines:
        section = _SECTION.match(line)
        if section and not section[1]:
            in_params = section[2] in _PARAM_SECTIONS
        elif line and not line[0].isspace():
            in_params = False
        multi = _MULTI_PARAM.match(line) if in_params else None
        if multi:
            out.extend(f"{multi['indent']}{n.strip()}: {multi['text']}" for n in multi["names"].split(","))
        else:
            out.append(line)
    return "\n".join(out)


class InputoptDocstrings(griffe.Extension):
    """Rewrite every docstring of the loaded package as described in the module docstring."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        text = _EXAMPLE.sub(r"\1Examples:", docstring.value)
        text = _split_multi_params(text)
        docstring.value = _ROLE.sub(lambda m: _role(obj, m), text)

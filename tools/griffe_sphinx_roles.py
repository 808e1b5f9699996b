"""Render the docstrings' Sphinx roles as links in the API reference.

The package's docstrings refer to other objects the way ``help()`` readers
and Sphinx users expect: ``:func:`fallback```, ``:class:`~resilient.events.Subscription```,
``:meth:`reset```. mkdocstrings shows such roles as literal text. This Griffe
extension rewrites them in the docstrings Griffe loads for the site (never in
the source, so ``help()`` is unchanged):

- a target Griffe can resolve from the docstring's scope (the object, its
  class, its module, then the package) becomes a cross-reference
  ``[`text`][path]``, checked by ``mkdocs build --strict``;
- anything else (a private helper, a module of the standard library) becomes
  inline code.

``~a.b.name`` shows ``name``; functions and methods get ``()``, as in Sphinx.
Configured in ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import griffe

ROLE = re.compile(r":(?P<role>func|meth|class|exc|attr|data|obj|mod|const):`(?P<target>[^`]+)`")
CALLABLE_ROLES = frozenset({"func", "meth"})


def rewrite_roles(text: str, resolve: Callable[[str], str | None]) -> str:
    """Return *text* with every Sphinx role replaced by a link or inline code.

    Args:
        text: A docstring.
        resolve: Maps a role's target (``"reset"``, ``"resilient.events.Subscription"``)
            to the identifier to link to, or None to render inline code.

    Returns:
        The docstring in Markdown.
    """

    def replace(match: re.Match[str]) -> str:
        role, target = match["role"], match["target"].strip()
        short = target.startswith("~")
        target = target.lstrip("~")
        shown = target.rsplit(".", 1)[-1] if short else target
        if role in CALLABLE_ROLES and not shown.endswith(")"):
            shown += "()"
        identifier = resolve(target)
        if identifier is None:
            return f"`{shown}`"
        return f"[`{shown}`][{identifier}]"

    return ROLE.sub(replace, text)


def _lookup(collection: Any, path: str) -> Any:
    try:
        return collection[path]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def resolve_in_scope(obj: griffe.Object, target: str, collection: Any) -> str | None:
    """Return the path of *target* as seen from *obj*'s docstring, or None.

    Args:
        obj: The object whose docstring mentions *target*.
        target: A dotted name, relative to *obj*'s scope or absolute.
        collection: Griffe's modules collection, to check that the path exists.

    Returns:
        The path to link to, or None if *target* is unknown or private.
    """
    if any(part.startswith("_") for part in target.split(".")[-1:]):
        return None  # private helpers are not rendered; show them as code
    head, _, rest = target.partition(".")
    candidates: list[str] = []
    try:
        base = obj.resolve(head)
    except griffe.NameResolutionError:
        pass
    else:
        candidates.append(f"{base}.{rest}" if rest else base)
    candidates.append(target)
    for path in candidates:
        found = _lookup(collection, path)
        if found is not None:
            # The reference renders only documented objects (show_if_no_docstring: false).
            return path if found.is_module or found.docstring is not None else None
    return None


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring into mkdocstrings cross-references."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite the roles of *obj*'s docstring."""
        docstring = obj.docstring
        if docstring is None or ":" not in docstring.value:
            return
        collection = loader.modules_collection
        docstring.value = rewrite_roles(docstring.value, lambda t: resolve_in_scope(obj, t, collection))

"""Message templates: Jinja2 in a sandbox, checked when a journey is applied (syntax, names
that nothing provides, `person.x` / `account.x` traits never seen) and rendered with
StrictUndefined at send time, so a message never goes out with a hole in it.

Variables: `person` (traits, with `id` and `email`), `account` (traits), `event` (the
trigger's properties), `journey` (its key and name), `unsubscribe_url`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

NAMES = frozenset({"person", "account", "event", "journey", "unsubscribe_url"})
ALWAYS = {"person": {"id", "email"}, "journey": {"key", "name"}}

# plain text (subjects, text bodies, Slack) is not HTML: escaping would show "&amp;" to people;
# HTML bodies render with the autoescaping environment
_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_html = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


class TemplateError(ValueError):
    pass


def check(source: str, where: str, traits: Mapping[str, Iterable[str]] | None = None) -> None:
    """Refuses a template that cannot render: a syntax error (with its line), a name that is
    not one of NAMES, or — when the workspace has seen traits — `person.x` / `account.x`
    that no trait provides. Trait checks use `traits`: {"person": names, "account": names}."""
    try:
        ast = _env.parse(source)
    except TemplateSyntaxError as e:
        raise TemplateError(
            f"{where}: template syntax error at line {e.lineno}: {e.message}"
        ) from None
    unknown = sorted(meta.find_undeclared_variables(ast) - NAMES)
    if unknown:
        raise TemplateError(
            f"{where}: {{{{ {unknown[0]} }}}} is not provided (use one of {', '.join(sorted(NAMES))})"
        )
    if traits is None:
        return
    defaulted = {id(f.node) for f in ast.find_all(nodes.Filter) if f.name in ("default", "d")}
    for node in ast.find_all(nodes.Getattr):
        if id(node) in defaulted:
            continue
        if isinstance(node.node, nodes.Name) and node.node.name in ("person", "account"):
            known = set(traits.get(node.node.name, ())) | ALWAYS.get(node.node.name, set())
            if known - ALWAYS.get(node.node.name, set()) and node.attr not in known:
                raise TemplateError(
                    f"{where}: no {node.node.name} trait {node.attr!r} has been seen "
                    f"(use `{node.node.name}.{node.attr} | default(...)` if it may be missing)"
                )


def render(source: str, variables: Mapping[str, Any], html: bool = False) -> str:
    try:
        return _compiled(source, html).render(**variables)
    except Exception as e:
        raise TemplateError(f"cannot render: {e}") from None


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool) -> Template:
    """A journey sends the same few templates to everyone: compiling one (0.5 ms) took 80% of
    a render. (A compiled template renders from any thread.)"""
    return (_html if html else _env).from_string(source)

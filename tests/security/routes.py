"""Every route of the site, enumerated from the URLconf, with sample arguments to reverse it."""

from __future__ import annotations

import inspect
import re
import uuid
from dataclasses import dataclass, field

import pytest
from asgiref import sync as markers
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern

SAMPLES = {"int": "1", "uuid": str(uuid.UUID(int=1)), "str": "x", "slug": "x", "path": "x"}


@dataclass
class Route:
    """One URL pattern: its full route text, the view, its name and how to fill its arguments."""

    route: str
    callback: object
    name: str  # "namespace:name", or "" for unnamed patterns
    params: dict[str, str] = field(default_factory=dict)  # argument name -> converter ("int", "uuid", "regex"...)

    def url(self, **values: object) -> str:
        """The path with each argument replaced by `values[name]`, or a sample of the right shape."""
        text = self.route
        for name, converter in self.params.items():
            value = str(values.get(name, SAMPLES.get(converter, "1")))
            text = re.sub(rf"\(\?P<{name}>[^)]*\)", value, text)  # regex groups first: they contain <name> too
            text = re.sub(rf"<(?:\w+:)?{name}>", value, text)
        text = re.sub(r"\(\?:[^)]*\)\??", "", text)
        return "/" + text.replace("^", "").replace("$", "").replace("\\", "").lstrip("/")

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.callback) or markers.iscoroutinefunction(self.callback)

    def param(self):
        """This route as a pytest parameter; async views (their work runs in other threads) get a
        transactional database, as the live-server tests do."""
        marks = [pytest.mark.django_db(transaction=True)] if self.is_async else []
        return pytest.param(self, id=self.route, marks=marks)

    @property
    def is_api(self) -> bool:
        return self.route.startswith("v1/")

    @property
    def is_admin(self) -> bool:
        return self.route.startswith("admin/")


def _pattern_text(pattern) -> tuple[str, dict[str, str]]:
    if isinstance(pattern, RoutePattern):
        text = str(pattern)
        params = {name: conv for conv, name in re.findall(r"<(?:(\w+):)?(\w+)>", text)}
        return text, {name: conv or "str" for name, conv in params.items()}
    if isinstance(pattern, RegexPattern):
        text = pattern.regex.pattern
        return text, {name: "regex" for name in pattern.regex.groupindex}
    return str(pattern), {}


def every_route() -> list[Route]:
    """Every URL pattern of ROOT_URLCONF, includes walked (django.urls.get_resolver)."""
    found: list[Route] = []

    def walk(resolver: URLResolver, prefix: str, params: dict[str, str], namespace: str) -> None:
        for entry in resolver.url_patterns:
            text, own = _pattern_text(entry.pattern)
            if isinstance(entry, URLResolver):
                child = (
                    f"{namespace}:{entry.namespace}" if namespace and entry.namespace else entry.namespace or namespace
                )
                walk(entry, prefix + text, {**params, **own}, child or "")
            elif isinstance(entry, URLPattern):
                name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name or ""
                found.append(Route(prefix + text, entry.callback, name, {**params, **own}))

    walk(get_resolver(), "", {}, "")
    return found

"""GitHub's page/per_page pagination and the `Link` header that walks it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

T = TypeVar("T")
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


def _positive(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    number = int(value)
    return number if number > 0 else None


@dataclass(frozen=True)
class Page:
    number: int
    per_page: int

    @classmethod
    def of(cls, params: QueryParams) -> Page:
        """Out-of-range or malformed values fall back as GitHub's do: per_page caps at 100."""
        per_page = min(_positive(params.get("per_page")) or DEFAULT_PER_PAGE, MAX_PER_PAGE)
        return cls(_positive(params.get("page")) or 1, per_page)

    def slice(self, items: Sequence[T]) -> list[T]:
        start = (self.number - 1) * self.per_page
        return list(items[start : start + self.per_page])

    def last(self, total: int) -> int:
        return max(1, -(-total // self.per_page))


def link_header(base: str, params: QueryParams, page: Page, total: int) -> str | None:
    """`<url>; rel="next", ...` in GitHub's order, or None when everything fits on one page.

    `base` is the absolute URL the links point at; every other query parameter is kept.
    """
    last = page.last(total)
    if last <= 1 and page.number <= 1:
        return None
    kept = [(k, v) for k, v in params.multi_items() if k != "page"]

    def url(number: int) -> str:
        return f"{base}?{urlencode([*kept, ('page', str(number))])}"

    links: list[tuple[str, int]] = []
    if page.number > 1:
        links.append(("prev", min(page.number - 1, last)))
    if page.number < last:
        links.append(("next", page.number + 1))
        links.append(("last", last))
    if page.number > 1:
        links.append(("first", 1))
    return ", ".join(f'<{url(n)}>; rel="{rel}"' for rel, n in links)

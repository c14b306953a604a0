"""A client of the admin API, for ``issuer trust`` and the demo."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx


class AdminError(Exception):
    """The service refused (``status`` 4xx) or failed; the message is its description."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    def __init__(
        self, url: str, token: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise AdminError(
                0, f"cannot reach the builder service: {type(error).__name__}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            if isinstance(body, dict) and "error_description" in body:
                raise AdminError(response.status_code, str(body["error_description"]))
            raise AdminError(response.status_code, f"the service answered {response.status_code}")
        return body

    def add(self, relationship: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/admin/trust", json=dict(relationship)))

    def import_all(self, relationships: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        body = {"relationships": [dict(r) for r in relationships]}
        return list(self._call("POST", "/admin/trust/import", json=body)["relationships"])

    def list(self, project: str) -> list[dict[str, Any]]:
        return list(self._call("GET", "/admin/trust", params={"project": project})["relationships"])

    def remove(self, project: str, relationship_id: str) -> None:
        self._call("DELETE", f"/admin/trust/{relationship_id}", params={"project": project})

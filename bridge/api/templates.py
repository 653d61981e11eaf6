"""``GET /api/v1/templates``: the bridge's named messages, for the Send SMS action's picker (and any
caller that chooses a ``template`` for ``POST /api/v1/sends`` or ``/previews``)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.api._door import ApiDoor
from bridge.message_templates import DEFAULT, NamedTemplate, TemplateBook
from bridge.metrics import Metrics


def template_view(template: NamedTemplate) -> dict[str, object]:
    return {
        "name": template.name,
        "label": template.label,
        "description": template.description or None,
        "default": template.name == DEFAULT,
        "version": template.version,
        "languages": sorted(template.languages),
    }


class TemplatesAPI:
    def __init__(
        self, *, templates: TemplateBook | None, api_keys: Sequence[str], max_body_bytes: int, metrics: Metrics
    ) -> None:
        self._door = ApiDoor(api_keys=api_keys, max_body_bytes=max_body_bytes, metrics=metrics)
        self._templates = templates

    async def listing(self, request: Request) -> Response:
        return await self._door.handle(self._listing, request)

    async def _listing(self, request: Request) -> Response:
        # The default first, then the named ones in the order the mapping file gives them.
        templates = list(self._templates) if self._templates is not None else []
        return JSONResponse({"templates": [template_view(template) for template in templates]})

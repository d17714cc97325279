"""`/console`: the web console, static files shipped in the package (`api/console/`), no build step.

The pages call the same REST API as everyone else with the key the user signs in with, so the console
can show nothing the key could not fetch itself. The headers keep the pages from loading anything but
their own files and from being framed by another site.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CONSOLE_DIR = Path(__file__).parent / "console"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidated on each load: an upgraded control plane serves its own pages
}


class ConsoleFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount(app: FastAPI) -> None:
    app.mount("/console", ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console")

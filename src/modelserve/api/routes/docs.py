"""GET /docs and GET /redoc: the API pages with their assets served from the package.

FastAPI's own pages load Swagger UI and ReDoc from a CDN; these load the copies shipped in
``fastapi-offline``, so an admin key typed into "Authorize" meets only script this server
serves. ``server.docs_enabled: false`` leaves out the pages, their assets and
``/openapi.json`` altogether.
"""

from __future__ import annotations

from importlib import resources

from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from modelserve.api.route_table import Access, RouteSpec

DOCS = "/docs"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
REDOC = "/redoc"
ASSETS = "/docs/static"
OPENAPI = "/openapi.json"
_TITLE = "modelserve - API"


async def docs(request: Request) -> Response:
    """Swagger UI, pointing at /openapi.json."""
    return get_swagger_ui_html(
        openapi_url=OPENAPI,
        title=_TITLE,
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
        oauth2_redirect_url=OAUTH2_REDIRECT,
    )


async def oauth2_redirect(request: Request) -> Response:
    return get_swagger_ui_oauth2_redirect_html()


async def redoc(request: Request) -> Response:
    """ReDoc, pointing at /openapi.json, without web fonts."""
    return get_redoc_html(
        openapi_url=OPENAPI,
        title=_TITLE,
        redoc_js_url=f"{ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS}/favicon.png",
        with_google_fonts=False,
    )


def docs_routes() -> list[RouteSpec]:
    """The pages, their static assets, and /openapi.json (which FastAPI serves itself)."""
    assets = StaticFiles(directory=str(resources.files("fastapi_offline").joinpath("static")))
    pages = [(DOCS, docs), (OAUTH2_REDIRECT, oauth2_redirect), (REDOC, redoc)]
    return [
        *(
            RouteSpec(path=path, endpoint=endpoint, access=Access.OPEN, monitoring=True)
            for path, endpoint in pages
        ),
        RouteSpec(path=ASSETS, mount=assets, access=Access.OPEN, monitoring=True),
        RouteSpec(path=OPENAPI, access=Access.OPEN, monitoring=True),
    ]

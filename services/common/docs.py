"""/docs that work on an offline host: Swagger UI's assets come from the `swagger-ui-bundle` package, served by
the service itself, instead of FastAPI's default CDN links. Create the app with docs_url=None, then call this.

/docs, /docs-assets/ and /openapi.json are public even when a token is set (services/common/auth.py PUBLIC_PATHS
says why); keep `path` and ASSETS in step with that list."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def offline_docs(app: FastAPI, path: str = "/docs") -> None:
    from swagger_ui_bundle import swagger_ui_path

    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get(path, include_in_schema=False, response_class=HTMLResponse)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

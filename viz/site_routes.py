"""The page itself: index.html and its static files (ES modules, served with a JavaScript MIME type)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).parent / "static"
# Browsers run a <script type="module"> only when served with a JavaScript MIME type; the system's mimetypes
# table may say otherwise (Windows registries map .js to text/plain), so say it here (RFC 9239: text/javascript).
JS_MIMETYPE = "text/javascript"

site = Blueprint("site", __name__)


@site.get("/")
def index() -> Response:
    return send_from_directory(STATIC, "index.html")


@site.get("/favicon.ico")
def favicon() -> Response:
    return Response(status=204)


@site.get("/static/<path:filename>")
def static_files(filename: str) -> Response:
    mimetype = JS_MIMETYPE if filename.endswith(".js") else None
    return send_from_directory(STATIC, filename, mimetype=mimetype)  # safe_join: no escaping the static folder

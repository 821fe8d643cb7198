"""The page as one Flask blueprint: the site, the graphs API and the work API, with one error contract.

Every failure is JSON ``{"error": ...}`` (the page shows the message), never Flask's HTML page: an ``ApiError``
with its status, 404 and 405 for a route or method that does not exist, 500 with the exception's first line for
anything unexpected. Every answer carries the security headers.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from .errors import ApiError
from .graph_routes import graphs
from .run_routes import runs
from .site_routes import site

page = Blueprint("page", __name__)
page.register_blueprint(site)
page.register_blueprint(graphs)
page.register_blueprint(runs)

CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


@page.errorhandler(ApiError)
def api_error(err: ApiError) -> tuple[Response, int]:
    return jsonify({"error": err.message, **err.extra}), err.status


# An unknown route or method fails before any blueprint is chosen: these handlers are the app's.
@page.app_errorhandler(404)
def not_found(_: Exception) -> tuple[Response, int]:
    return jsonify({"error": f"no such page or API route: {request.path[:200]}"}), 404


@page.app_errorhandler(405)
def bad_method(_: Exception) -> tuple[Response, int]:
    return jsonify({"error": f"method {request.method} is not allowed here"}), 405


@page.app_errorhandler(Exception)
def any_error(err: Exception) -> tuple[Response, int]:
    if isinstance(err, HTTPException):
        return jsonify({"error": f"{err.name}: {err.description}"}), err.code or 500
    current_app.logger.exception("unexpected error on %s", request.path)
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    return jsonify({"error": f"internal error: {type(err).__name__}: {first}"}), 500


@page.after_app_request
def headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp

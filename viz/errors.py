"""The one error a view raises: an HTTP status, a message for the page and extra JSON fields (matches, valid...)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra

"""The server's refusals: each a specific HTTP status, a short code a program can test and a message to act on."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the server refuses; the other sessions are not affected."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        #: a longer text (the server-side traceback of an environment's exception)
        self.detail = detail

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message,
                               "detail": self.message}
        if self.detail:
            out["traceback"] = self.detail
        if "Retry-After" in self.headers:
            out["retry_after_s"] = float(self.headers["Retry-After"])
        return out


def unknown_session(sid: str) -> ApiError:
    return ApiError(404, "unknown_session", f"no session {sid!r} on this server (open one with POST /sessions)")


def gone(sid: str, why: str) -> ApiError:
    return ApiError(410, "lease_expired" if "expired" in why else "session_closed", f"session {sid!r} {why}")


def full(n: int, retry_after_s: int) -> ApiError:
    return ApiError(503, "server_full", f"all {n} sessions of this server are in use; retry after {retry_after_s}s "
                    "(or close sessions you no longer need)", headers={"Retry-After": str(retry_after_s)})


def busy(sid: str) -> ApiError:
    return ApiError(409, "session_busy", f"session {sid!r} is still answering another request; send one request "
                    "at a time per session")


def malformed(message: str) -> ApiError:
    return ApiError(422, "malformed", message)

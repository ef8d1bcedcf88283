"""The one application error type. Domain errors subclass it and carry the API's code."""


class ApplicationError(Exception):
    """An error a client can act on; rendered as ``{code, detail[, errors]}``."""

    code = "error"
    status = 400
    default_detail = "The request could not be processed."
    #: Seconds a client should wait before retrying (the ``Retry-After`` header).
    retry_after: int | None = None
    #: Transient: the command did not run to a decision (a lost race, a timeout), so
    #: a retry may succeed. An ``Idempotency-Key`` never records such an answer.
    transient = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: dict | None = None,
        retry_after: int | None = None,
    ):
        self.detail = detail or self.default_detail
        self.errors = errors
        if retry_after is not None:
            self.retry_after = retry_after
        super().__init__(self.detail)

    def body(self) -> dict:
        """The error's JSON body, ``{code, detail[, errors]}`` (API.md)."""
        body: dict = {"code": self.code, "detail": self.detail}
        if self.errors is not None or self.status == 400:
            body["errors"] = self.errors or {}
        return body


class InvalidInput(ApplicationError):
    code = "invalid"
    status = 400
    default_detail = "The request has invalid fields."

    @classmethod
    def field(cls, name: str, message: str) -> "InvalidInput":
        return cls(f"{name}: {message}", errors={name: [message]})


class NotFound(ApplicationError):
    code = "not_found"
    status = 404
    default_detail = "Not found."


class Conflict(ApplicationError):
    status = 409
    code = "conflict"


class ConcurrentUpdate(Conflict):
    code = "concurrent_update"
    default_detail = "Someone else changed this at the same time; try again."
    transient = True


class InvalidState(Conflict):
    code = "invalid_state"
    default_detail = "The command is not allowed in the current state."


class PreconditionFailed(ApplicationError):
    code = "precondition_failed"
    status = 412
    default_detail = "The aggregate changed since you read it (If-Match)."


class ServiceUnavailable(ApplicationError):
    """The database or the event store cannot be reached: retry shortly. (A command
    that got this answer may or may not have been saved; its retry is checked against
    the new state like any command.)"""

    code = "service_unavailable"
    status = 503
    default_detail = "A database is unreachable; retry shortly."
    retry_after = 1
    transient = True

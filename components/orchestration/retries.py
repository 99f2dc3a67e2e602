"""Which failures are worth a retry: lost connections and timeouts to MLflow, S3 or the Prefect API. Never bad
input, failed validation, a failed gate or a bug (anything else, and every GanopsError)."""

from __future__ import annotations

from components.core.errors import GanopsError

# Exception class names (matched along the MRO, so no client library is imported to classify).
TRANSIENT = {
    "ConnectionError",
    "TimeoutError",
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "TimeoutException",
    "RemoteProtocolError",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ServerDisconnectedError",
}


def is_transient(exc: BaseException | None) -> bool:
    """True when `exc` (or an exception it was raised from) is a connection failure or a timeout."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, GanopsError):
            return False
        if any(cls.__name__ in TRANSIENT for cls in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def retry_transient(task, task_run, state) -> bool:
    """A Prefect retry_condition_fn: retry only transient failures."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as e:  # the task's own exception, re-raised by Prefect
        return is_transient(e)
    return False

"""Logging: one line per event, JSON when stdout is not a terminal, and the ids each line concerns.

The request id (HTTP) and the send id (worker) travel in context variables, so every log call
made while handling them, in any module and in worker threads, carries them without passing them
around. Nothing personal is added here: callers already mask numbers and never log secrets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal, TextIO, assert_never

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
send_id: ContextVar[int | None] = ContextVar("send_id", default=None)

LogFormat = Literal["auto", "json", "text"]


@contextlib.contextmanager
def about_send(value: int) -> Iterator[None]:
    """Tag the log lines written inside the block with this send id."""
    token = send_id.set(value)
    try:
        yield
    finally:
        send_id.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.send_id = send_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "send_id"):
            if getattr(record, key, None) is not None:
                line[key] = getattr(record, key)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = [f"{key}={getattr(record, key)}" for key in ("send_id", "request_id") if getattr(record, key, None)]
        return f"{text} [{' '.join(ids)}]" if ids else text


def configure_logging(level: str, fmt: LogFormat = "auto", *, stream: TextIO | None = None) -> None:
    """Servers log to stdout (what a Procfile host collects); commands that print data to stdout
    pass ``sys.stderr`` so their output stays clean.
    """
    stream = stream or sys.stdout
    match fmt:
        case "json":
            use_json = True
        case "text":
            use_json = False
        case "auto":
            use_json = not stream.isatty()
        case _:
            assert_never(fmt)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(_ContextFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Each outbound-message URL carries the webhook token: uvicorn's access log would print it.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)

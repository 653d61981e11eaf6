"""Log lines: JSON or text, carrying the request and send ids they concern."""

from __future__ import annotations

import io
import json
import logging

from bridge.logs import about_send, configure_logging, request_id


def test_json_log_lines_carry_the_ids_they_concern() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    token = request_id.set("req-1")
    with about_send(42):
        logging.getLogger("bridge.test").info("Send %s done", 42)
    request_id.reset(token)
    logging.getLogger("bridge.test").warning("no ids here")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["message"], first["send_id"], first["request_id"], first["level"], first["logger"]) == (
        "Send 42 done",
        42,
        "req-1",
        "info",
        "bridge.test",
    )
    assert "send_id" not in second
    assert "request_id" not in second


def test_text_lines_name_the_ids_at_the_end() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=stream)
    with about_send(7):
        logging.getLogger("bridge.test").info("Send done")
    logging.getLogger("bridge.test").info("Idle")
    with_id, without = stream.getvalue().splitlines()
    assert with_id.endswith("bridge.test: Send done [send_id=7]")
    assert without.endswith("bridge.test: Idle")


def test_auto_is_json_unless_the_stream_is_a_terminal() -> None:
    stream = io.StringIO()  # not a terminal, as under a process manager
    configure_logging("INFO", "auto", stream=stream)
    logging.getLogger("bridge.test").info("hello")
    assert json.loads(stream.getvalue())["message"] == "hello"


def test_the_level_filters_and_the_access_log_stays_off() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", "json", stream=stream)
    logging.getLogger("bridge.test").info("not shown")
    logging.getLogger("bridge.test").warning("shown")
    # uvicorn's access log would print each outbound-message URL, which carries the webhook token.
    logging.getLogger("uvicorn.access").warning('"POST /salesforce/outbound-message?token=secret HTTP/1.1" 200')
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["shown"]


def test_an_exception_is_kept_in_its_line() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("bridge.test").exception("It failed")
    [line] = stream.getvalue().splitlines()
    assert "RuntimeError: boom" in json.loads(line)["exception"]

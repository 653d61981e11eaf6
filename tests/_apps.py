"""The web app in-process, as :func:`bridge.app.create_app` builds it from hand-made services, and
the command line in-process (``bridge.cli.main``) with an environment of the test's own."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.crm.salesforce import plugin as salesforce
from bridge.crm.salesforce.settings import SalesforceSettings
from bridge.metrics import Metrics
from bridge.ops.cli import main
from bridge.ops.overview import publish_gauges, read_overview
from bridge.services import DoorOptions, Services, Shutdown
from bridge.store import Store
from bridge.worker import Worker, WorkerOptions
from tests._fakes import FakeGateway
from tests._processes import FIXTURES

OUTBOUND_URL = "/salesforce/outbound-message"
XML = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
BODY = (FIXTURES / "outbound_message_3.xml").read_bytes()  # three notifications, org 00D5g00000SBXRG
WEBHOOK_TOKENS = ("current-token", "previous-token")
API_KEY = "key"
API_KEYS = (API_KEY, "previous-key")
ORG_IDS = ("00D5g00000SBXRG",)  # 15 characters, as admins paste them
MAX_BODY_BYTES = 64 * 1024
# Nothing listens on port 9: connections are refused at once.
UNREACHABLE_STORE = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2"


def services(
    store: Store,
    *,
    worker: Worker | None = None,
    run_worker: bool = True,
    api_keys: Sequence[str] = API_KEYS,
    metrics: Metrics | None = None,
    metrics_key: str = "",
    dashboard_password: str = "",
    shutdown: Shutdown | None = None,
) -> Services:
    """What ``create_app`` needs, without CCAI or a CRM connection: the doors store, nothing is sent.
    The CRM is Salesforce, its outbound-message door keyed with WEBHOOK_TOKENS for ORG_IDS."""
    return Services(
        store=store,
        worker=worker,
        run_worker=run_worker,
        crm=salesforce,
        crm_settings=salesforce_settings(bridge_webhook_token=",".join(WEBHOOK_TOKENS), org_ids=",".join(ORG_IDS)),
        doors=DoorOptions(
            max_body_bytes=MAX_BODY_BYTES,
            api_keys=list(api_keys),
            metrics_key=metrics_key,
            dashboard_password=dashboard_password,
        ),
        metrics=metrics or Metrics(),
        shutdown=shutdown or Shutdown(20.0),
    )


def salesforce_settings(**values: Any) -> SalesforceSettings:
    """Salesforce's settings as the environment would name them, with the built-in file defaults."""
    return SalesforceSettings(**{"bridge_config": "/nonexistent/bridge.toml", **values})


def watched_metrics(store: Store) -> Metrics:
    """Metrics whose store gauges read ``store``, as :func:`bridge.services.build_services` wires them."""
    metrics = Metrics()
    publish_gauges(metrics, lambda: read_overview(store))
    return metrics


def idle_worker(store: Store, *, unhealthy_after: float = 60.0) -> Worker:
    """A real worker with no steps; with ``unhealthy_after`` below zero it reports a problem at once."""
    return Worker(
        store=store,
        board=store.status,
        gateway=FakeGateway(),
        options=WorkerOptions(poll_seconds=0.1, lease_seconds=30, retention_seconds=0, unhealthy_after=unhealthy_after),
    )


# -- the command line ---------------------------------------------------------------------------


def clean_environment(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """No bridge setting from the environment, and a working directory without ``.env`` or ``config/``."""
    for name in list(os.environ):
        if name.startswith(("CCAI_", "SALESFORCE_", "BRIDGE_", "DATABASE_URL", "DYNO", "LOG_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(directory)


@contextmanager
def preserved_logging() -> Iterator[None]:
    """``main()`` points the root logger at the (captured) stderr; put back what was there."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("uvicorn.access").disabled
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("uvicorn.access").disabled = access


@dataclass
class Run:
    """What one in-process ``bridge`` command did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Bridge = Callable[..., Run]


def command_line(capsys: pytest.CaptureFixture[str], before: Callable[[], None] = lambda: None) -> Bridge:
    """``run(*args)``: ``bridge.cli.main`` in-process, its output captured; ``before`` sets up each call."""

    def run(*args: str) -> Run:
        before()
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run

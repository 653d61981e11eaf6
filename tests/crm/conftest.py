"""The simulated CRMs (the Salesforce org, the Zendesk account), each served over TLS for the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._org import Org, running_org
from tests._zendesk import Account, running_account


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    yield from running_org(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    yield from running_account(tmp_path_factory.mktemp("zendesk-tls"))

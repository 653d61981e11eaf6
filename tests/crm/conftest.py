"""The simulated Salesforce org, served over TLS for the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._org import Org, running_org


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    yield from running_org(tmp_path_factory.mktemp("tls"))

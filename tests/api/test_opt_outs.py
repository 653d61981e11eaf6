"""The opt-out list on the JSON door and as operator commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bridge.app import create_app
from bridge.ops.cli import main
from bridge.store import Store
from tests._apps import services

AUTH = {"Authorization": "Bearer key"}


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(services=services(store, api_keys=["key"]))) as c:
        yield c


def test_a_flow_records_a_stop_and_the_list_shows_it_masked(client: TestClient, store: Store) -> None:
    added = client.post(
        "/api/v1/opt-outs", json={"number": "(415) 555-0100", "source": "agent", "note": "said stop"}, headers=AUTH
    )
    assert added.status_code == 201
    assert added.json() | {"since": None} == {
        "number": "*******0100",
        "source": "agent",
        "note": "said stop",
        "since": None,
    }
    again = client.post("/api/v1/opt-outs", json={"number": "+1 415-555-0100"}, headers=AUTH)
    assert (again.status_code, again.json()["source"]) == (200, "agent")  # already there: the first record stays
    listing = client.get("/api/v1/opt-outs", headers=AUTH).json()
    assert (listing["total"], [e["number"] for e in listing["opt_outs"]]) == (1, ["*******0100"])
    assert "4155550100" not in client.get("/api/v1/opt-outs", headers=AUTH).text
    assert store.opt_outs.get("+14155550100") is not None


def test_removal_is_explicit_and_by_number_in_any_format(client: TestClient) -> None:
    client.post("/api/v1/opt-outs", json={"number": "+14155550100"}, headers=AUTH)
    assert client.delete("/api/v1/opt-outs/(415)%20555-0100", headers=AUTH).json() == {"removed": True}
    assert client.delete("/api/v1/opt-outs/4155550100", headers=AUTH).status_code == 404
    assert client.get("/api/v1/opt-outs", headers=AUTH).json()["total"] == 0


def test_paging(client: TestClient) -> None:
    for i in range(5):
        client.post("/api/v1/opt-outs", json={"number": f"+1 415 555 01{i:02d}"}, headers=AUTH)
    first = client.get("/api/v1/opt-outs", params={"per": "2"}, headers=AUTH).json()
    third = client.get("/api/v1/opt-outs", params={"per": "2", "page": "3"}, headers=AUTH).json()
    assert (len(first["opt_outs"]), len(third["opt_outs"]), first["total"]) == (2, 1, 5)
    assert client.get("/api/v1/opt-outs", params={"page": "0"}, headers=AUTH).status_code == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"number": "12345"}, 400),
        ({"number": "+44 20 7946 0958"}, 400),
        ({}, 400),
        ({"number": "+14155550100", "note": "a\u0000b"}, 400),
        ({"number": "+14155550100", "colour": "red"}, 400),
    ],
)
def test_bad_requests_are_refused(client: TestClient, body: dict[str, object], status: int) -> None:
    assert client.post("/api/v1/opt-outs", json=body, headers=AUTH).status_code == status


def test_the_same_keys_protect_it(client: TestClient) -> None:
    assert client.get("/api/v1/opt-outs").status_code == 401
    assert client.post("/api/v1/opt-outs", json={"number": "+14155550100"}).status_code == 401


def test_operators_manage_the_list_from_the_command_line(
    store_url: str, store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", store_url)
    assert main(["opt-outs", "add", "(415) 555-0100", "--note", "replied STOP"]) == 0
    assert "*******0100 is now on the opt-out list." in capsys.readouterr().out
    assert main(["opt-outs", "list"]) == 0
    listed = capsys.readouterr().out
    assert "*******0100" in listed
    assert "replied STOP" in listed
    assert "4155550100" not in listed
    assert main(["opt-outs", "remove", "+1 415 555 0100"]) == 0
    assert main(["opt-outs", "remove", "+1 415 555 0100"]) == 1
    assert main(["opt-outs", "add", "not a number"]) == 2

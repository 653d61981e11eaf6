"""The committed Pub/Sub stubs are exactly what the pinned tools generate from the committed proto."""

from __future__ import annotations

from pathlib import Path

from bridge.crm.salesforce._pubsub import __main__ as stubs
from bridge.crm.salesforce._pubsub import pubsub_api_pb2 as pb2


def test_regenerating_the_stubs_gives_the_committed_files(tmp_path: Path) -> None:
    fresh = stubs.generate(tmp_path)
    assert [path.name for path in fresh] == list(stubs.GENERATED)
    for path in fresh:
        committed = stubs.HERE / path.name
        assert path.read_bytes() == committed.read_bytes(), f"{path.name} differs: run python -m {stubs.__package__}"


def test_the_stubs_speak_salesforces_service() -> None:
    service = pb2.DESCRIPTOR.services_by_name["PubSub"]
    assert service.full_name == "eventbus.v1.PubSub"
    assert {m.name for m in service.methods} >= {"Subscribe", "GetSchema", "GetTopic", "Publish"}
    assert pb2.ReplayPreset.Name(pb2.CUSTOM) == "CUSTOM"

"""Every element of every metadata file in ``salesforce/`` is one its Metadata API type declares.

The element lists are data, ``salesforce/metadata-schema.json``, generated from Salesforce's own
Metadata API WSDL by ``salesforce/scripts/metadata_schema.py`` (its ``source`` names the file, commit
and API version). A misspelt or invented element is silently ignored or refused only when an admin
deploys; here it fails the build.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree

ROOT = Path(__file__).parents[3]
PROJECT = ROOT / "salesforce"
SOURCE = PROJECT / "force-app"
NAMESPACE = "{http://soap.sforce.com/2006/04/metadata}"
SCHEMA: dict[str, Any] = json.loads((PROJECT / "metadata-schema.json").read_text(encoding="utf-8"))
METADATA_FILES = sorted(SOURCE.rglob("*-meta.xml"))
BOOLEANS = {"true", "false"}


def schema_types() -> dict[str, Mapping[str, Any]]:
    types: dict[str, Mapping[str, Any]] = dict(SCHEMA["types"])
    for supplement in SCHEMA["supplement"].values():
        types.update(supplement["types"])
    return types


TYPES = schema_types()
# "Type.element" -> the pseudo-type describing an opaque element's documented children.
OPAQUE = {key: supplement["root"] for key, supplement in SCHEMA["supplement"].items()}


def problems(element: Element, type_name: str, where: str) -> Iterator[str]:
    """What is wrong with ``element`` read as ``type_name``, one sentence per problem."""
    described = TYPES[type_name]
    allowed: Mapping[str, str] = described["elements"]
    present = set()
    for child in element:
        name = child.tag.removeprefix(NAMESPACE)
        present.add(name)
        here = f"{where}/{name}"
        if name not in allowed:
            yield f"{here}: {type_name} has no element {name!r}"
            continue
        child_type = OPAQUE.get(f"{type_name}.{name}", allowed[name])
        if child_type in TYPES:
            yield from problems(child, child_type, here)
        elif len(child):
            yield f"{here}: {child_type} holds a value, not elements"
        elif child_type in SCHEMA["enumerations"] and (child.text or "") not in SCHEMA["enumerations"][child_type]:
            yield f"{here}: {child.text!r} is not a {child_type} ({', '.join(SCHEMA['enumerations'][child_type])})"
        elif child_type == "xsd:boolean" and (child.text or "") not in BOOLEANS:
            yield f"{here}: {child.text!r} is not a boolean"
    # fullName comes from the file name in source format; every other required element must be there.
    for name in described["required"]:
        if name not in present and name != "fullName":
            yield f"{where}: {type_name} requires {name!r}"


def file_problems(root: Element) -> list[str]:
    type_name = root.tag.removeprefix(NAMESPACE)
    if type_name not in TYPES:
        return [f"{type_name} is not in metadata-schema.json: run salesforce/scripts/metadata_schema.py again"]
    return list(problems(root, type_name, type_name))


@pytest.mark.parametrize("path", METADATA_FILES, ids=lambda path: path.name)
def test_every_element_is_one_its_metadata_type_allows(path: Path) -> None:
    assert file_problems(ElementTree.parse(path).getroot()) == []


def test_the_check_refuses_invented_elements_values_and_missing_required_ones() -> None:
    named = ElementTree.fromstring(
        f"""<NamedCredential xmlns="{NAMESPACE[1:-1]}">
            <allowFormulasInHeader>true</allowFormulasInHeader>
            <allowMergeFieldsInHeader>yes</allowMergeFieldsInHeader>
            <namedCredentialType>Secured</namedCredentialType>
            <namedCredentialParameters><parameterName>Url</parameterName></namedCredentialParameters>
        </NamedCredential>"""
    )
    assert file_problems(named) == [
        "NamedCredential/allowFormulasInHeader: NamedCredential has no element 'allowFormulasInHeader'",
        "NamedCredential/allowMergeFieldsInHeader: 'yes' is not a boolean",
        "NamedCredential/namedCredentialType: 'Secured' is not a NamedCredentialType "
        f"({', '.join(SCHEMA['enumerations']['NamedCredentialType'])})",
        "NamedCredential/namedCredentialParameters: NamedCredentialParameter requires 'parameterType'",
        "NamedCredential: NamedCredential requires 'label'",
    ]


def test_every_type_the_project_ships_is_described_from_a_named_source() -> None:
    shipped = {ElementTree.parse(path).getroot().tag.removeprefix(NAMESPACE) for path in METADATA_FILES}
    assert shipped <= set(SCHEMA["types"])
    source = SCHEMA["source"]
    assert source["wsdl"].startswith("https://github.com/forcedotcom/wsdl/")
    assert len(source["commit"]) == 40
    assert float(source["api_version"]) >= 66.0
    assert all(
        supplement["source"].startswith("https://developer.salesforce.com/")
        for supplement in SCHEMA["supplement"].values()
    )

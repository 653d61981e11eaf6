"""Write the element lists of the Metadata API types this project ships, from Salesforce's WSDL.

The result, ``salesforce/metadata-schema.json``, is what ``tests/test_salesforce_project.py`` checks
every metadata file against: each element's children must be ones its type declares, and a value of
an enumerated type must be one of its values. It is generated, not written by hand, so that an element
name is never our guess:

    python salesforce/scripts/metadata_schema.py metadata.wsdl --commit <sha> > salesforce/metadata-schema.json

``metadata.wsdl`` is Salesforce's own Metadata API WSDL as published in github.com/forcedotcom/wsdl
(``resources/metadata.wsdl``; the same file an org serves at Setup > API > Generate Metadata WSDL).
Only the types reachable from the root types the project's files use are kept, with inherited
elements merged in. Elements whose WSDL type is opaque (``xsd:base64Binary`` holding XML, such as a
Lightning component's ``targetConfigs``) are documented elsewhere: SUPPLEMENT lists them, with the
page each list comes from.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import ElementTree

XSD = "{http://www.w3.org/2001/XMLSchema}"
METADATA_NS = "http://soap.sforce.com/2006/04/metadata"
PROJECT = Path(__file__).parents[1]
SOURCE = PROJECT / "force-app"

# The children of opaque elements, from the page each is documented on. Keys are "Type.element";
# each value describes a pseudo-type in the same shape as the WSDL's.
SUPPLEMENT: dict[str, dict[str, object]] = {
    "LightningComponentBundle.targetConfigs": {
        "source": "https://developer.salesforce.com/docs/platform/lwc/guide/reference-configuration-tags.html",
        "types": {
            "LwcTargetConfigs": {"elements": {"targetConfig": "LwcTargetConfig"}, "required": []},
            "LwcTargetConfig": {
                "elements": {
                    "actionType": "xsd:string",
                    "configurationEditor": "xsd:string",
                    "dataset": "xsd:string",
                    "event": "xsd:string",
                    "hasStep": "xsd:string",
                    "objects": "LwcObjects",
                    "property": "xsd:string",
                    "propertyType": "xsd:string",
                    "sourceType": "xsd:string",
                    "supportedFormFactors": "LwcFormFactors",
                },
                "required": [],
            },
            "LwcObjects": {"elements": {"object": "xsd:string"}, "required": []},
            "LwcFormFactors": {"elements": {"supportedFormFactor": "xsd:string"}, "required": []},
        },
        "root": "LwcTargetConfigs",
    },
}


def complex_types(schema: Element) -> dict[str, Element]:
    return {node.attrib["name"]: node for node in schema.iter(f"{XSD}complexType") if "name" in node.attrib}


def enumerations(schema: Element) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for node in schema.iter(f"{XSD}simpleType"):
        values = [value.attrib["value"] for value in node.iter(f"{XSD}enumeration")]
        if "name" in node.attrib and values:
            found[node.attrib["name"]] = values
    return found


def local(name: str) -> str:
    return name.split(":", 1)[1] if name.startswith("tns:") else name


def elements_of(name: str, types: dict[str, Element]) -> dict[str, str]:
    """Element name -> type name, the base type's elements first (xsd:extension)."""
    node = types[name]
    elements: dict[str, str] = {}
    for extension in node.iter(f"{XSD}extension"):
        elements.update(elements_of(local(extension.attrib["base"]), types))
    for element in node.iter(f"{XSD}element"):
        elements[element.attrib["name"]] = local(element.attrib["type"])
    return elements


def required_of(name: str, types: dict[str, Element]) -> list[str]:
    """Elements without minOccurs="0": the WSDL's default is exactly one."""
    node = types[name]
    required = [
        required
        for extension in node.iter(f"{XSD}extension")
        for required in required_of(local(extension.attrib["base"]), types)
    ]
    required += [
        element.attrib["name"] for element in node.iter(f"{XSD}element") if element.attrib.get("minOccurs", "1") != "0"
    ]
    return required


def root_types(source: Path) -> set[str]:
    """The root element of every metadata file in the project."""
    roots = set()
    for path in source.rglob("*-meta.xml"):
        tag = ElementTree.parse(path).getroot().tag
        roots.add(tag.removeprefix(f"{{{METADATA_NS}}}"))
    return roots


def closure(roots: set[str], types: dict[str, Element]) -> dict[str, dict[str, object]]:
    """Every type reachable from the roots: its elements (name -> type) and the required ones."""
    kept: dict[str, dict[str, object]] = {}
    pending = sorted(roots)
    while pending:
        name = pending.pop()
        if name in kept or name not in types:
            continue
        elements = elements_of(name, types)
        kept[name] = {"elements": elements, "required": required_of(name, types)}
        pending.extend(child for child in elements.values() if child in types and child not in kept)
    return dict(sorted(kept.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wsdl", type=Path)
    parser.add_argument("--commit", required=True, help="the forcedotcom/wsdl commit the WSDL comes from")
    arguments = parser.parse_args()
    text = arguments.wsdl.read_text(encoding="utf-8")
    version = re.search(r"Metadata API version (\d+\.\d+)", text)
    schema = ElementTree.fromstring(text.encode("utf-8"))
    types = complex_types(schema)
    kept = closure(root_types(SOURCE), types)
    enums = enumerations(schema)
    used_enums = {
        name
        for described in kept.values()
        for name in described["elements"].values()  # type: ignore[attr-defined]
        if name in enums
    }
    document = {
        "source": {
            "wsdl": "https://github.com/forcedotcom/wsdl/blob/main/resources/metadata.wsdl",
            "commit": arguments.commit,
            "api_version": version.group(1) if version else None,
            "generated_by": "python salesforce/scripts/metadata_schema.py metadata.wsdl --commit <sha>",
        },
        "types": kept,
        "enumerations": {name: enums[name] for name in sorted(used_enums)},
        "supplement": SUPPLEMENT,
    }
    json.dump(document, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

"""The simulated org's login endpoints: OAuth 2.0 token (client credentials, JWT bearer) and SOAP login."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import jwt
from defusedxml.ElementTree import fromstring
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class SalesforceSimulator(Protocol):
    """The simulated org as its logins see it (:class:`bridge.sandbox.salesforce.SalesforceSimulator`;
    a Protocol, so that the two modules do not import each other)."""

    @property
    def clients(self) -> Mapping[str, str]: ...  # OAuth client id -> secret

    @property
    def jwt_keys(self) -> Mapping[str, str]: ...  # OAuth client id -> PEM public key

    @property
    def users(self) -> Mapping[str, str]: ...  # username -> password + security token

    def issue_token(self, how: str) -> str: ...


_PARTNER = "{urn:partner.soap.sforce.com}"


def _oauth_error(code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=400)


async def oauth_token(sim: SalesforceSimulator, request: Request) -> Response:
    # Token requests are application/x-www-form-urlencoded; the standard library reads them.
    form = {key: values[0] for key, values in parse_qs((await request.body()).decode()).items()}
    grant = form.get("grant_type", "")
    if grant == "client_credentials":
        header = request.headers.get("authorization", "")
        try:
            client_id, _, secret = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
        except ValueError:
            return _oauth_error("invalid_client", "invalid client credentials")
        if client_id not in sim.clients or not hmac.compare_digest(secret, sim.clients[client_id]):
            return _oauth_error("invalid_client", "invalid client credentials")
        how = "client_credentials"
    elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            key = sim.jwt_keys[claims["iss"]]
            claims = jwt.decode(assertion, key, algorithms=["RS256"], options={"verify_aud": False})
        except (jwt.PyJWTError, KeyError):
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("sub") not in sim.users:
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        how = "jwt"
    else:
        return _oauth_error("unsupported_grant_type", "grant type not supported")
    instance_url = str(request.base_url).rstrip("/")
    return JSONResponse({"access_token": sim.issue_token(how), "instance_url": instance_url, "token_type": "Bearer"})


async def soap_login(sim: SalesforceSimulator, request: Request) -> Response:
    body = fromstring(await request.body())
    username = body.findtext(f".//{_PARTNER}username") or ""
    password = body.findtext(f".//{_PARTNER}password") or ""
    if username not in sim.users or not hmac.compare_digest(password, sim.users[username]):
        fault = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
            ' xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>'
            "<faultcode>INVALID_LOGIN</faultcode>"
            "<faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring>"
            "<detail><sf:LoginFault><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid "
            "username, password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail>"
            "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
        )
        return Response(fault, status_code=500, media_type="text/xml")
    server = f"{str(request.base_url).rstrip('/')}/services/Soap/u/61.0/00D5g00000SBXRG"
    answer = (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>'
        f"<serverUrl>{escape(server)}</serverUrl><sessionId>{sim.issue_token('password')}</sessionId>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )
    return Response(answer, media_type="text/xml")

"""The Pub/Sub API's login: the bridge's own Salesforce login (any mode), with the org id as tenant.

The Pub/Sub API takes the same OAuth access token as the REST API. The stream logs in on its own
(one session per process holding it), so a renewal never races the gateway's.
"""

from __future__ import annotations

import anyio
import anyio.to_thread

from bridge.crm.salesforce.auth import SalesforceCredentials, login
from bridge.crm.salesforce.gateway import TimeoutSession
from bridge.crm.salesforce.ids import to18
from bridge.crm.salesforce.pubsub import PubSubLogin
from bridge.errors import CRMAuthError


class PubSubSession:
    """A :class:`~bridge.crm.salesforce.pubsub.LoginSource` over the bridge's Salesforce credentials."""

    def __init__(
        self,
        *,
        credentials: SalesforceCredentials,
        org_id: str,
        api_version: str,
        timeout: float,
        ca_bundle: str | None = None,
    ) -> None:
        self._credentials = credentials
        self._org_id = to18(org_id)
        self._api_version = api_version
        self._http = TimeoutSession(timeout, ca_bundle=ca_bundle)
        self._current: PubSubLogin | None = None
        self._lock = anyio.Lock()
        self.logins = 0

    async def login(self) -> PubSubLogin:
        async with self._lock:
            if self._current is None:
                self._current = await anyio.to_thread.run_sync(self._login)
            return self._current

    async def renew(self, refused: PubSubLogin) -> PubSubLogin:
        async with self._lock:
            if self._current is not None and self._current != refused:
                return self._current  # renewed meanwhile
            if not self._credentials.can_login:
                raise CRMAuthError(
                    "Salesforce refused the access token on the Pub/Sub API: it has expired or was revoked. Set a "
                    "new SALESFORCE_ACCESS_TOKEN, or use a login mode that renews itself (README)."
                )
            self._current = await anyio.to_thread.run_sync(self._login)
            return self._current

    def _login(self) -> PubSubLogin:
        token, instance = login(self._credentials, session=self._http, api_version=self._api_version)
        self.logins += 1
        return PubSubLogin(access_token=token, instance_url=f"https://{instance}", org_id=self._org_id)

    def close(self) -> None:
        self._http.close()

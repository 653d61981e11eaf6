"""Salesforce's settings: its login (``SALESFORCE_*``), the outbound-message door's secrets, and
its keys of the mapping file (the Case fields and Task statuses of ``[writeback]``, the Contact
checkbox of ``[consent]``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from bridge.crm.salesforce.auth import SalesforceCredentials, choose_credentials
from bridge.errors import ConfigError
from bridge.settings import CRMSettings, Section, comma_list


class SalesforceWriteback(Section):
    """The Case fields the outcome is written to, and the Task statuses (``[writeback]``)."""

    chat_id_field: str = "CCAI_Chat_Id__c"
    status_field: str = "CCAI_SMS_Status__c"
    error_field: str = "CCAI_SMS_Error__c"
    chat_status_field: str = "CCAI_Chat_Status__c"
    chat_agent_field: str = "CCAI_Chat_Agent__c"
    chat_ended_at_field: str = "CCAI_Chat_Ended_At__c"
    chat_outcome_field: str = "CCAI_Chat_Outcome__c"
    # A sent SMS's Task stays open with this status while the chat is followed, then is completed.
    task_status_open: str = "In Progress"
    task_status_done: str = "Completed"


class SalesforceConsent(Section):
    """``[consent] record_field``: "Contact.<checkbox>", ticked when the bridge learns of an opt-out
    (empty: never). By default the checkbox salesforce/ deploys, which consent also reads."""

    record_field: str = "Contact.CCAI_SMS_Opt_Out__c"

    @field_validator("record_field")
    @classmethod
    def _contact_field(cls, value: str) -> str:
        if value and not re.fullmatch(r"Contact\.[A-Za-z][A-Za-z0-9_]*", value):
            raise ValueError(f"{value!r} must be a Contact checkbox, written Contact.<API name>")
        return value


class SalesforceSettings(CRMSettings):
    """``SALESFORCE_*`` (field names without the prefix), ``BRIDGE_WEBHOOK_TOKEN``, and Salesforce's tables."""

    model_config = SettingsConfigDict(env_prefix="salesforce_")

    instance_url: str = ""
    access_token: SecretStr = SecretStr("")
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    domain: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    security_token: SecretStr = SecretStr("")
    private_key: SecretStr = SecretStr("")
    private_key_file: str = ""
    api_version: str = "61.0"
    timeout_seconds: float = Field(default=30.0, gt=0)
    ca_bundle: str = ""
    org_ids: Annotated[tuple[str, ...], NoDecode] = ()
    # The outbound-message door's secret (the ?token= of its URL): named as it always was.
    webhook_token: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), validation_alias="bridge_webhook_token"
    )

    # The Pub/Sub API trigger (README: Salesforce Pub/Sub trigger): the platform event channel to
    # subscribe to (empty: off), where a subscription with no stored position starts, the endpoint,
    # and how long a silent stream is trusted (Salesforce sends a keepalive within 270 s).
    pubsub_topic: str = ""
    pubsub_replay_preset: Literal["LATEST", "EARLIEST"] = "LATEST"
    pubsub_endpoint: str = "api.pubsub.salesforce.com:7443"
    pubsub_dead_after_seconds: float = Field(default=300.0, gt=0)

    writeback: SalesforceWriteback = SalesforceWriteback()
    consent: SalesforceConsent = SalesforceConsent()

    @field_validator("org_ids", "webhook_token", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return comma_list(value)

    @field_validator("pubsub_topic")
    @classmethod
    def _a_platform_event_channel(cls, value: str) -> str:
        if value and not re.fullmatch(r"/event/[A-Za-z][A-Za-z0-9_]*__e", value):
            raise ValueError(f"{value!r} is not a platform event channel, written /event/<API name>__e")
        return value

    @field_validator("org_ids")
    @classmethod
    def _org_ids_look_right(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for org in value:
            if len(org) not in (15, 18) or not org.isalnum():
                raise ValueError(f"{org!r} is not an organisation id (15 or 18 letters and digits, starting 00D)")
        return value

    def credentials(self) -> SalesforceCredentials:
        """The one complete Salesforce login in the settings, or :class:`ConfigError` saying what is missing."""
        # A PEM in an environment variable often arrives with its newlines written as "\n".
        private_key = self.private_key.get_secret_value().replace("\\n", "\n")
        return choose_credentials(
            {
                "instance_url": self.instance_url,
                "access_token": self.access_token.get_secret_value(),
                "client_id": self.client_id,
                "client_secret": self.client_secret.get_secret_value(),
                "domain": self.domain,
                "username": self.username,
                "password": self.password.get_secret_value(),
                "security_token": self.security_token.get_secret_value(),
                "private_key": private_key,
                "private_key_file": self.private_key_file,
            }
        )

    def instance(self) -> str | None:
        """The org's own address (https://acme.my.salesforce.com), when the settings name it: the
        access token's instance, or a My Domain. ``login`` and ``test`` name no org."""
        if self.instance_url:
            return self.instance_url.rstrip("/")
        domain = self.domain.strip().strip("/").removeprefix("https://")
        if not domain or domain in ("login", "test"):
            return None
        return f"https://{domain}" if domain.endswith(".salesforce.com") else f"https://{domain}.salesforce.com"

    def problems(self, *, web: bool) -> tuple[list[str], list[str]]:
        """What a real deployment still lacks: (missing settings by name, other problems as sentences).
        A worker alone (``web=False``) does not need the outbound-message door's secrets."""
        missing = []
        if web:
            required: dict[str, object] = {
                "SALESFORCE_ORG_IDS": self.org_ids,
                "BRIDGE_WEBHOOK_TOKEN": self.webhook_token,
            }
            missing = [name for name, value in required.items() if not value]
        problems = []
        if self.pubsub_topic and len(self.org_ids) != 1:
            problems.append(
                "SALESFORCE_PUBSUB_TOPIC needs SALESFORCE_ORG_IDS to name exactly one organisation: the Pub/Sub "
                "API's tenant id."
            )
        key_file = self.private_key_file
        if key_file and not self.private_key.get_secret_value() and not Path(key_file).is_file():
            problems.append(f"SALESFORCE_PRIVATE_KEY_FILE names {key_file}, which does not exist.")
        try:
            self.credentials()
        except ConfigError as exc:
            problems.append(str(exc))
        return missing, problems

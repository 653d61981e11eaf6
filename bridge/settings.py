"""Configuration: environment variables (and ``.env``) plus the mapping file ``config/bridge.toml``.

Everything is read once, in :func:`load_settings`, and passed down; nothing else reads the
environment. Invalid values stop start-up with a sentence that names the setting.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridge.errors import ConfigError
from bridge.model import ResendPolicy
from bridge.phones import us_e164
from bridge.salesforce_auth import SalesforceCredentials, choose_credentials
from bridge.send_window import Window, WindowRules, parse_window, timezone_from_field
from bridge.template import Template

DEFAULT_CONFIG_PATH = Path("config/bridge.toml")
_FIELD_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$")


class MappingConfig(BaseModel):
    """How a Case becomes an SMS request (``[mapping]`` in bridge.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phone_fields: tuple[str, ...] = ("ContactMobile", "ContactPhone")
    default_region: str = "US"
    allowed_regions: tuple[str, ...] = ("US",)
    message_field: str = ""
    message_template: str = (
        "Hello from our support team about your case {CaseNumber}. Reply to this message to chat with us."
    )
    agent: Literal["owner", "none"] = "owner"

    @field_validator("message_template")
    @classmethod
    def _template_parses(cls, value: str) -> str:
        Template(value)  # raises ConfigError with the reason
        return value

    @property
    def template(self) -> Template:
        return Template(self.message_template)


class WritebackConfig(BaseModel):
    """What the bridge writes on the Case (``[writeback]`` in bridge.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chat_id_field: str = "CCAI_Chat_Id__c"
    status_field: str = "CCAI_SMS_Status__c"
    error_field: str = "CCAI_SMS_Error__c"
    chat_status_field: str = "CCAI_Chat_Status__c"
    chat_agent_field: str = "CCAI_Chat_Agent__c"
    chat_ended_at_field: str = "CCAI_Chat_Ended_At__c"
    chat_outcome_field: str = "CCAI_Chat_Outcome__c"
    error_max_length: int = Field(default=255, ge=20)
    create_task: bool = True
    task_subject_sent: str = "SMS sent via CCAI Platform"
    task_subject_not_sent: str = "SMS not sent via CCAI Platform"
    # A sent SMS's Task stays open with this status while the chat is followed, then is completed.
    task_status_open: str = "In Progress"
    task_status_done: str = "Completed"


class MessageConfig(BaseModel):
    """Limits every message obeys, whatever its source (``[message]`` in bridge.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A long text is split into segments, each billed and delivered separately (160 GSM-7 or 70
    # UCS-2 characters for one, 153/67 each when split); past this many it is refused.
    max_segments: int = Field(default=10, ge=1, le=30)


class ConsentConfig(BaseModel):
    """What stops a send before CCAI is called (``[consent]`` in bridge.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Case or relationship fields (read with the Case) that block every send when true.
    block_if_true: tuple[str, ...] = ("Contact.DoNotCall",)
    # "Contact.<checkbox>": set it on the Case's Contact when the bridge learns of an opt-out.
    record_field: str = ""
    # CCAI's words for a refusal because the consumer opted out (not documented; matched case-insensitively).
    opt_out_phrases: tuple[str, ...] = ("opted out", "opt-out", "unsubscribed")

    @field_validator("block_if_true")
    @classmethod
    def _field_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not _FIELD_PATH.match(path):
                raise ValueError(f"{path!r} is not a field API name such as Contact.DoNotCall")
        return value

    @field_validator("record_field")
    @classmethod
    def _contact_field(cls, value: str) -> str:
        if value and not re.fullmatch(r"Contact\.[A-Za-z][A-Za-z0-9_]*", value):
            raise ValueError(f"{value!r} must be a Contact checkbox, written Contact.<API name>")
        return value


class SendWindowConfig(BaseModel):
    """Whose local time the send window is measured in, and stricter windows by state (``[send_window]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A Case or Contact field holding the recipient's time zone (IANA or Salesforce TimeZoneSidKey).
    timezone_field: str = ""
    # Two-letter state code -> window ("off" for none), for the state of the number's area code.
    states: dict[str, str] = Field(default_factory=lambda: {"FL": "08:00-20:00", "OK": "08:00-20:00"})

    @field_validator("states")
    @classmethod
    def _windows(cls, value: dict[str, str]) -> dict[str, str]:
        for state, window in value.items():
            if not re.fullmatch(r"[A-Z]{2}", state):
                raise ValueError(f"{state!r} is not a two-letter state code such as FL")
            parse_window(window)  # raises ValueError naming the bad text
        return value

    def windows(self) -> dict[str, Window | None]:
        return {state: parse_window(window) for state, window in self.states.items()}


class FileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mapping: MappingConfig = MappingConfig()
    writeback: WritebackConfig = WritebackConfig()
    message: MessageConfig = MessageConfig()
    consent: ConsentConfig = ConsentConfig()
    send_window: SendWindowConfig = SendWindowConfig()


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """All settings. Field names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    database_url: str = "sqlite:///bridge.db"
    host: str = "0.0.0.0"  # noqa: S104 - a web dyno must listen on every interface
    port: int = 8000

    ccai_subdomain: str = ""
    ccai_domain: str = ""
    ccai_api_token: SecretStr = SecretStr("")
    ccai_base_url: str = ""
    ccai_outbound_number: str = ""
    ccai_chat_type: str = "Messaging (SMS)"
    ccai_timeout_seconds: float = Field(default=15.0, gt=0)
    ccai_manager_url: str = ""
    ccai_rate_limit: float = Field(default=10.0, gt=0)
    ccai_rate_share: float = Field(default=1.0, gt=0, le=1)
    ccai_rate_headroom: float = Field(default=0.08, ge=0, le=1)
    ccai_retry_for_seconds: float = Field(default=3600.0, ge=0)
    ccai_max_concurrency: int = Field(default=20, ge=1)

    salesforce_instance_url: str = ""
    salesforce_access_token: SecretStr = SecretStr("")
    salesforce_client_id: str = ""
    salesforce_client_secret: SecretStr = SecretStr("")
    salesforce_domain: str = ""
    salesforce_username: str = ""
    salesforce_password: SecretStr = SecretStr("")
    salesforce_security_token: SecretStr = SecretStr("")
    salesforce_private_key: SecretStr = SecretStr("")
    salesforce_private_key_file: str = ""
    salesforce_api_version: str = "61.0"
    salesforce_timeout_seconds: float = Field(default=30.0, gt=0)
    salesforce_ca_bundle: str = ""
    salesforce_org_ids: Annotated[tuple[str, ...], NoDecode] = ()

    bridge_webhook_token: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    bridge_api_key: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    bridge_config: Path = DEFAULT_CONFIG_PATH
    bridge_embedded_worker: bool = True
    bridge_loop_guard_seconds: float = Field(default=600.0, ge=0)
    bridge_batch_size: int = Field(default=50, ge=1, le=100)
    bridge_lease_seconds: float = Field(default=20.0, ge=2)
    bridge_resend_possibly_delivered: ResendPolicy = "lookup"
    bridge_max_takeovers: int = Field(default=3, ge=1)
    bridge_unhealthy_after_seconds: float = Field(default=60.0, gt=0)
    bridge_chat_sync_seconds: float = Field(default=60.0, ge=0)
    bridge_chat_follow_days: float = Field(default=7.0, gt=0)
    bridge_no_reply_hours: float = Field(default=24.0, ge=0)
    bridge_session_events_user: str = ""
    bridge_session_events_password: SecretStr = SecretStr("")
    bridge_send_window: str = "08:00-21:00"
    bridge_default_timezone: str = "America/New_York"
    bridge_poll_seconds: float = Field(default=1.0, gt=0)
    bridge_writeback_retry_for_seconds: float = Field(default=86400.0, ge=0)
    bridge_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    bridge_shutdown_seconds: float = Field(default=20.0, ge=0, le=25)
    bridge_allow_sqlite_on_heroku: bool = False
    dyno: str = ""  # set by Heroku on every dyno
    bridge_retention_days: float = Field(default=30.0, ge=2)
    bridge_metrics_key: SecretStr = SecretStr("")
    bridge_dashboard_password: SecretStr = SecretStr("")
    forwarded_allow_ips: str = ""
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"

    # The mapping file's contents: not a field, so that no environment variable (such as FILE) can
    # reach it; set by load_settings() through with_file().
    _file: FileConfig = PrivateAttr(default_factory=FileConfig)

    @field_validator("salesforce_org_ids", "bridge_webhook_token", "bridge_api_key", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("salesforce_org_ids")
    @classmethod
    def _org_ids_look_right(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for org in value:
            if len(org) not in (15, 18) or not org.isalnum():
                raise ValueError(f"{org!r} is not an organisation id (15 or 18 letters and digits, starting 00D)")
        return value

    @field_validator("bridge_send_window")
    @classmethod
    def _window_parses(cls, value: str) -> str:
        parse_window(value)  # raises ValueError naming the bad text
        return value

    @field_validator("bridge_default_timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        zone = timezone_from_field(value)
        if zone is None:
            raise ValueError(f"{value!r} is not a time zone (use an IANA name such as America/Chicago)")
        return zone

    @field_validator("ccai_outbound_number")
    @classmethod
    def _outbound_to_e164(cls, value: str) -> str:
        return us_e164(value, label="The number", reveal=True) if value else value

    @model_validator(mode="after")
    def _derive_ccai_base_url(self) -> Settings:
        if not self.ccai_base_url and self.ccai_subdomain and self.ccai_domain:
            object.__setattr__(self, "ccai_base_url", f"https://{self.ccai_subdomain}.{self.ccai_domain}/apps/api/v1")
        object.__setattr__(self, "ccai_base_url", self.ccai_base_url.rstrip("/"))
        return self

    def with_file(self, file_config: FileConfig) -> Settings:
        """These settings with the mapping file's contents."""
        copy = self.model_copy()
        copy._file = file_config
        return copy

    @property
    def file(self) -> FileConfig:
        return self._file

    @property
    def mapping(self) -> MappingConfig:
        return self._file.mapping

    @property
    def writeback(self) -> WritebackConfig:
        return self._file.writeback

    @property
    def message(self) -> MessageConfig:
        return self._file.message

    @property
    def consent(self) -> ConsentConfig:
        return self._file.consent

    @property
    def window_rules(self) -> WindowRules:
        return WindowRules(
            default=parse_window(self.bridge_send_window),
            states=self._file.send_window.windows(),
            default_zone=self.bridge_default_timezone,
            timezone_field=self._file.send_window.timezone_field,
        )

    def salesforce_credentials(self) -> SalesforceCredentials:
        """The one complete Salesforce login in the settings, or :class:`ConfigError` saying what is missing."""
        # A PEM in an environment variable often arrives with its newlines written as "\n".
        private_key = self.salesforce_private_key.get_secret_value().replace("\\n", "\n")
        return choose_credentials(
            {
                "instance_url": self.salesforce_instance_url,
                "access_token": self.salesforce_access_token.get_secret_value(),
                "client_id": self.salesforce_client_id,
                "client_secret": self.salesforce_client_secret.get_secret_value(),
                "domain": self.salesforce_domain,
                "username": self.salesforce_username,
                "password": self.salesforce_password.get_secret_value(),
                "security_token": self.salesforce_security_token.get_secret_value(),
                "private_key": private_key,
                "private_key_file": self.salesforce_private_key_file,
            }
        )

    def redacted_database_url(self) -> str:
        """``DATABASE_URL`` with its password masked, for messages."""
        parts = urlsplit(self.database_url)
        if parts.password:
            return self.database_url.replace(f":{parts.password}@", ":***@", 1)
        return self.database_url

    def check_storage(self) -> None:
        """Refuse SQLite on Heroku, where every restart wipes the dyno's disk (and the queue with it)."""
        if self.dyno and self.database_url.startswith("sqlite") and not self.bridge_allow_sqlite_on_heroku:
            raise ConfigError(
                f"This is a Heroku dyno ({self.dyno}) and DATABASE_URL is SQLite: the dyno's disk is wiped on "
                "every restart, so queued events would be lost. Add Heroku Postgres (it sets DATABASE_URL), or set "
                "BRIDGE_ALLOW_SQLITE_ON_HEROKU=true to accept the loss."
            )

    def problems_for_serving(self, *, web: bool = True) -> list[str]:
        """What a real (non-sandbox) deployment still lacks, as sentences; empty when it can start.
        A worker alone (``web=False``) does not need the inbound secrets.
        """
        required: dict[str, object] = {
            "CCAI_SUBDOMAIN": self.ccai_subdomain,
            "CCAI_API_TOKEN": self.ccai_api_token.get_secret_value(),
            "CCAI_BASE_URL (or CCAI_DOMAIN)": self.ccai_base_url,
            "CCAI_OUTBOUND_NUMBER": self.ccai_outbound_number,
        }
        if web:
            required |= {
                "SALESFORCE_ORG_IDS": self.salesforce_org_ids,
                "BRIDGE_WEBHOOK_TOKEN": self.bridge_webhook_token,
            }
        missing = [name for name, value in required.items() if not value]
        problems = [f"these settings are missing: {', '.join(missing)}."] if missing else []
        key_file = self.salesforce_private_key_file
        if key_file and not self.salesforce_private_key.get_secret_value() and not Path(key_file).is_file():
            problems.append(f"SALESFORCE_PRIVATE_KEY_FILE names {key_file}, which does not exist.")
        try:
            self.salesforce_credentials()
        except ConfigError as exc:
            problems.append(str(exc))
        return problems


def read_file_config(path: Path, *, explicit: bool) -> FileConfig:
    """Read bridge.toml. A missing default file means built-in defaults; a missing named file is an error."""
    if not path.exists():
        if explicit:
            raise ConfigError(f"BRIDGE_CONFIG names {path}, which does not exist.")
        return FileConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read the mapping file {path}: {exc}.") from exc
    try:
        return FileConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"The mapping file {path} is not valid: {_describe(exc, env=False)}") from exc


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, ``.env`` and the mapping file.

    ``overrides`` take precedence over the environment (used by ``--sandbox`` and by tests); a
    ``file`` override replaces the mapping file.
    """
    given = overrides.pop("file", None)
    try:
        settings = Settings(**overrides)
    except ConfigError:
        raise
    except ValidationError as exc:
        raise ConfigError(f"The configuration is not valid: {_describe(exc)}") from exc
    if given is not None:
        return settings.with_file(given)
    explicit = settings.bridge_config != DEFAULT_CONFIG_PATH
    return settings.with_file(read_file_config(settings.bridge_config, explicit=explicit))


def _describe(exc: ValidationError, *, env: bool = True) -> str:
    """Name each bad value as the user wrote it: an environment variable, or [section] key of the file."""
    problems = []
    for error in exc.errors():
        parts = [str(part) for part in error["loc"]]
        if env:
            where = "_".join(parts).upper() or "value"
        else:
            where = f"[{parts[0]}] {'.'.join(parts[1:])}" if len(parts) > 1 else ".".join(parts) or "file"
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        problems.append(f"{where}: {message}")
    return "; ".join(problems) + "."

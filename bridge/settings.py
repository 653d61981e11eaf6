"""Configuration: environment variables (and ``.env``) plus the mapping file ``config/bridge.toml``.

Each settings class reads, in this order of precedence, the values it is given, the environment,
``.env``, then its tables of the mapping file (through pydantic-settings' own
``TomlConfigSettingsSource``). :class:`Settings` holds the core; the chosen CRM's settings are a
:class:`CRMSettings` of its own (``bridge/crm/<name>/settings.py``), read the same way, with the same
environment names as ever. Everything is read once, at start-up (``bridge.services.load_settings``),
and passed down; nothing else reads the environment. Invalid values stop start-up with a sentence
that names the setting, as an environment variable or as ``[section] key``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources import DotEnvSettingsSource, EnvSettingsSource, InitSettingsSource

from bridge.errors import ConfigError
from bridge.message_templates import TemplateBook, TemplateEntry, build_book
from bridge.model import ResendPolicy
from bridge.phones import us_e164
from bridge.send_window import Window, WindowRules, parse_window, timezone_from_field
from bridge.template import Template

DEFAULT_CONFIG_PATH = Path("config/bridge.toml")
FIELD_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$")


class Section(BaseModel):
    """A table of the mapping file. Core and CRM settings may each declare keys of the same table
    (``[writeback]``), so a section ignores keys it does not know; :func:`unknown_keys` then
    refuses those nobody knows."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class MappingConfig(Section):
    """How a ticket becomes an SMS request (``[mapping]`` in bridge.toml)."""

    phone_fields: tuple[str, ...] = ("ContactMobile", "ContactPhone")
    default_region: str = "US"
    allowed_regions: tuple[str, ...] = ("US",)
    message_field: str = ""
    message_template: str = (
        "Hello from our support team about your case {CaseNumber}. Reply to this message to chat with us."
    )
    agent: Literal["owner", "none"] = "owner"
    # The ticket field naming the template to send (the shipped Flows' trigger); cleared by the
    # write-back once the bridge has the request. Empty: templates are chosen only by the request
    # and by [templates.<name>] action_ids.
    template_field: str = "CCAI_SMS_Template__c"
    # A ticket or Contact field holding the customer's language (es, fr-CA): picks a template's variant.
    language_field: str = ""

    @field_validator("template_field", "language_field")
    @classmethod
    def _field_path(cls, value: str) -> str:
        if value and not FIELD_PATH.match(value):
            raise ValueError(f"{value!r} is not a field API name such as Contact.Language__c")
        return value

    @field_validator("message_template")
    @classmethod
    def _template_parses(cls, value: str) -> str:
        Template(value)  # raises ConfigError with the reason
        return value

    @property
    def template(self) -> Template:
        return Template(self.message_template)


# The named templates when the mapping file has no [templates] table (config/bridge.toml states them).
BUILT_IN_TEMPLATES: dict[str, dict[str, Any]] = {
    "case_opened": {
        "label": "Case opened",
        "description": "We have your case and are working on it.",
        "text": (
            "Hello from our support team: we opened case {CaseNumber} for you. Reply to this message to chat with us."
        ),
        "action_ids": [],
    },
    "awaiting_customer": {
        "label": "Awaiting the customer",
        "description": "We need an answer from the customer to go on.",
        "text": (
            "Hello from our support team about case {CaseNumber}: we need your reply to go on. Reply to "
            "this message to chat with us."
        ),
        "action_ids": [],
        "languages": {
            "es": (
                "Hola, le escribe nuestro equipo de soporte sobre el caso {CaseNumber}: necesitamos su "
                "respuesta para continuar. Responda a este mensaje para chatear con nosotros."
            )
        },
    },
    "resolved": {
        "label": "Case resolved",
        "description": "The case is solved; the customer can still reply.",
        "text": (
            "Hello from our support team: case {CaseNumber} is resolved. Reply to this message if you still need help."
        ),
        "action_ids": [],
    },
}


class TemplatesConfig(Section):
    """``[templates.<name>]``: named messages beside the default (``[mapping] message_template``),
    each a table of :class:`bridge.message_templates.TemplateEntry`."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, TemplateEntry] = Field(init=False)

    def entries(self) -> dict[str, TemplateEntry]:
        return dict(self.__pydantic_extra__ or {})


class WritebackConfig(Section):
    """What every CRM's write-back shares (``[writeback]``; the CRM adds its own keys, such as field names)."""

    error_max_length: int = Field(default=255, ge=20)
    create_task: bool = True  # a note on the ticket for every send (a Task in Salesforce)
    task_subject_sent: str = "SMS sent via CCAI Platform"
    task_subject_not_sent: str = "SMS not sent via CCAI Platform"


class MessageConfig(Section):
    """Limits every message obeys, whatever its source (``[message]`` in bridge.toml)."""

    # A long text is split into segments, each billed and delivered separately (160 GSM-7 or 70
    # UCS-2 characters for one, 153/67 each when split); past this many it is refused.
    max_segments: int = Field(default=10, ge=1, le=30)


class ConsentConfig(Section):
    """What stops a send before CCAI is called (``[consent]`` in bridge.toml)."""

    # Ticket or relationship fields (read with the ticket) that block every send when true.
    # The default includes the opt-out checkbox salesforce/ deploys: the box that says texts stop does stop them.
    block_if_true: tuple[str, ...] = ("Contact.DoNotCall", "Contact.CCAI_SMS_Opt_Out__c")
    # CCAI's words for a refusal because the consumer opted out (not documented; matched case-insensitively).
    opt_out_phrases: tuple[str, ...] = ("opted out", "opt-out", "unsubscribed")

    @field_validator("block_if_true")
    @classmethod
    def _field_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not FIELD_PATH.match(path):
                raise ValueError(f"{path!r} is not a field API name such as Contact.DoNotCall")
        return value


class SendWindowConfig(Section):
    """Whose local time the send window is measured in, and stricter windows by state (``[send_window]``)."""

    # A ticket or contact field holding the recipient's time zone (IANA or Salesforce TimeZoneSidKey).
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


def comma_list(value: Any) -> Any:
    """``"a, b"`` from the environment as ``("a", "b")``."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class FileBacked(BaseSettings):
    """Settings read from the values given, the environment, ``.env``, then the mapping file
    (``BRIDGE_CONFIG``): fields whose type is a :class:`Section` are that file's tables, and only
    the file sets them (a stray variable named MESSAGE or CONSENT must not replace a table)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    # BRIDGE_CONFIG, whatever a subclass's prefix: every settings class reads the same file.
    bridge_config: Path = Field(default=DEFAULT_CONFIG_PATH, validation_alias="bridge_config")
    # Fields besides the file's tables that the environment must never set.
    not_from_environment: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(init_settings, InitSettingsSource)
        assert isinstance(env_settings, EnvSettingsSource)
        assert isinstance(dotenv_settings, DotEnvSettingsSource)
        prefix = str(settings_cls.model_config.get("env_prefix") or "").lower()
        tables = {prefix + name for name in section_fields(settings_cls)} | set(cls.not_from_environment)
        for source in (env_settings, dotenv_settings):
            source.env_vars = {name: value for name, value in source.env_vars.items() if name not in tables}
        path = (
            init_settings.init_kwargs.get("bridge_config")
            or env_settings.env_vars.get("bridge_config")
            or dotenv_settings.env_vars.get("bridge_config")
            or DEFAULT_CONFIG_PATH
        )
        toml = TomlConfigSettingsSource(settings_cls, toml_file=Path(path))
        return init_settings, env_settings, dotenv_settings, toml, file_secret_settings

    def file_sections(self) -> dict[str, Section]:
        return {name: getattr(self, name) for name in section_fields(type(self))}


def section_fields(settings_cls: type[BaseModel]) -> list[str]:
    """The fields of a settings class that are tables of the mapping file."""
    return [
        name
        for name, field in settings_cls.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
    ]


class CRMSettings(FileBacked):
    """The chosen CRM's own settings; each CRM subclasses it (``bridge/crm/<name>/settings.py``).
    This base, with nothing in it, stands for a CRM not configured (a worker built in a test)."""


class Location(BaseSettings):
    """Where the rest of the configuration is: which CRM, and which mapping file. Read first."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    bridge_crm: str = "salesforce"
    bridge_config: Path = DEFAULT_CONFIG_PATH


class Settings(FileBacked):
    """The core settings. Field names are the environment variables, upper-cased; sections are
    the mapping file's tables; ``crm`` is the chosen CRM's settings."""

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
    # Wrap-up (disposition) codes your agents submit when a customer asks to stop texts: a chat
    # wrapped up with one puts the number on the opt-out list (as end_user_opt_out always does).
    ccai_opt_out_dispositions: Annotated[tuple[str, ...], NoDecode] = ()

    bridge_crm: str = "salesforce"
    bridge_api_key: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    bridge_embedded_worker: bool = True
    bridge_loop_guard_seconds: float = Field(default=600.0, ge=0)
    bridge_batch_size: int = Field(default=50, ge=1, le=100)
    bridge_lease_seconds: float = Field(default=20.0, ge=2)
    bridge_resend_possibly_delivered: ResendPolicy = "lookup"
    bridge_max_takeovers: int = Field(default=3, ge=1)
    bridge_unhealthy_after_seconds: float = Field(default=60.0, gt=0)
    # PostgreSQL: the longest one store transaction may take before its connection is cut and the
    # attempt counts as an outage (a link that silently drops every byte would otherwise block forever).
    bridge_store_timeout_seconds: float = Field(default=30.0, ge=1, le=600)
    bridge_chat_sync_seconds: float = Field(default=60.0, ge=0)
    bridge_chat_follow_days: float = Field(default=7.0, gt=0)
    bridge_no_reply_hours: float = Field(default=24.0, ge=0)
    bridge_session_events_user: str = ""
    bridge_session_events_password: SecretStr = SecretStr("")
    # The bridge's base URL as the CRM reaches it (https://bridge.example.com): where `bridge salesforce
    # setup` points the outbound message, and what `bridge check` compares it with.
    bridge_public_url: str = ""
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
    # Where the verdict's changes are posted (Slack-compatible JSON); its URL is a secret (Slack's holds a token).
    bridge_alert_webhook_url: SecretStr = SecretStr("")
    bridge_alert_ca_bundle: str = ""  # a CA file to trust for a receiver with a private CA
    forwarded_allow_ips: str = ""
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"

    mapping: MappingConfig = MappingConfig()
    templates: TemplatesConfig = TemplatesConfig(**BUILT_IN_TEMPLATES)
    writeback: WritebackConfig = WritebackConfig()
    message: MessageConfig = MessageConfig()
    consent: ConsentConfig = ConsentConfig()
    send_window: SendWindowConfig = SendWindowConfig()

    # Set by bridge.services.load_settings from the CRM's own settings class; never from the environment.
    crm: CRMSettings = Field(default_factory=CRMSettings, exclude=True)
    not_from_environment: ClassVar[frozenset[str]] = frozenset({"crm"})

    @field_validator("bridge_api_key", "ccai_opt_out_dispositions", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return comma_list(value)

    @field_validator("bridge_public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and (not value.startswith("https://") or urlsplit(value).path.strip("/")):
            raise ValueError(f"{value!r} is not the bridge's base URL (https://host, without a path)")
        return value.rstrip("/")

    @field_validator("bridge_alert_webhook_url")
    @classmethod
    def _alerts_over_https(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and not url.lower().startswith("https://"):
            # Never echo the URL: it is the webhook's secret.
            raise ValueError("the alert webhook must be an https:// URL (the alerts name the bridge's problems)")
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

    @model_validator(mode="before")
    @classmethod
    def _derive_ccai_base_url(cls, data: Any) -> Any:
        """CCAI_BASE_URL defaults to the tenant's, from CCAI_SUBDOMAIN and CCAI_DOMAIN."""
        if isinstance(data, dict):
            base = str(data.get("ccai_base_url") or "")
            subdomain, domain = data.get("ccai_subdomain"), data.get("ccai_domain")
            if not base and subdomain and domain:
                base = f"https://{subdomain}.{domain}/apps/api/v1"
            data = {**data, "ccai_base_url": base.rstrip("/")}
        return data

    @model_validator(mode="after")
    def _templates_build(self) -> Settings:
        self.template_book()  # raises ConfigError naming the [templates.<name>] table that cannot work
        return self

    def template_book(self) -> TemplateBook:
        return build_book(
            self.mapping.message_template,
            self.templates.entries(),
            template_field=self.mapping.template_field,
            language_field=self.mapping.language_field,
        )

    @property
    def window_rules(self) -> WindowRules:
        return WindowRules(
            default=parse_window(self.bridge_send_window),
            states=self.send_window.windows(),
            default_zone=self.bridge_default_timezone,
            timezone_field=self.send_window.timezone_field,
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


def unknown_keys(data: Mapping[str, Any], models: Iterable[type[BaseModel]]) -> list[str]:
    """Keys of the mapping file no settings class declares, as ``[section] key`` (or ``[section]``)."""
    known: dict[str, set[str]] = {}
    open_tables: set[str] = set()
    for model in models:
        for name in section_fields(model):
            annotation = model.model_fields[name].annotation
            assert isinstance(annotation, type)
            assert issubclass(annotation, Section)
            known.setdefault(name, set()).update(annotation.model_fields)
            if annotation.model_config.get("extra") == "allow":
                open_tables.add(name)  # its keys are names the user chooses ([templates.<name>])
    found = []
    for table, values in data.items():
        if table not in known:
            found.append(f"[{table}]")
        elif isinstance(values, Mapping) and table not in open_tables:
            found += [f"[{table}] {key}" for key in values if key not in known[table]]
    return found


def describe(exc: ValidationError, model: type[BaseModel], *, prefix: str = "") -> str:
    """Name each bad value as the user wrote it: an environment variable, or [section] key of the file."""
    sections = set(section_fields(model))
    aliases = {str(field.validation_alias) for field in model.model_fields.values() if field.validation_alias}
    problems = []
    for error in exc.errors():
        parts = [str(part) for part in error["loc"]]
        if parts and parts[0] in sections:
            where = f"[{parts[0]}] {'.'.join(parts[1:])}" if len(parts) > 1 else f"[{parts[0]}]"
        elif parts and parts[0] in aliases:
            where = parts[0].upper()
        else:
            where = (prefix + "_".join(parts)).upper() or "value"
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        problems.append(f"{where}: {message}")
    return "; ".join(problems) + "."

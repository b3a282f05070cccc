"""The node's configuration: one YAML file, validated by a typed model.

Relative paths in the file are relative to the file's own folder. Errors name the
file, the field and what to do (:class:`ConfigError`).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from connector.datasets import COLUMN_TYPES, DATASET_FORMATS, ID_PATTERN
from connector.interceptors.admin import AdminTokenError, read_token_file
from connector.policy import PolicyError, normalize_offer_policy

CONFIG_ENV = "HANSE_CONFIG"
"""Environment variable naming the config file when ``--config`` is not given."""

DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024

Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN.pattern)]
NodeName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class ConfigError(Exception):
    """The configuration is wrong: which file, which field, what to do."""

    def __init__(self, file: Path | str, field: str, message: str) -> None:
        self.file = str(file)
        self.field = field
        self.message = message
        where = f"{self.file}: {field}" if field else self.file
        super().__init__(f"{where}: {message}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_listen(value: str, *, allow_empty: bool) -> str:
    if value == "" and allow_empty:
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (for example 127.0.0.1:7444; port 0 = any)")
    return value


class NodeSection(_Model):
    """Who this node is."""

    name: NodeName
    """Short node name (lower-case letters, digits, '-')."""
    participant_id: str
    """The participant id, an absolute URI equal to the URI SAN of the node's certificate."""
    data_dir: Path = Path("data")
    """Folder for the node's database, endpoints file and state."""

    @field_validator("participant_id")
    @classmethod
    def _uri(cls, value: str) -> str:
        scheme, sep, rest = value.partition(":")
        if not sep or not scheme.isascii() or not scheme[:1].isalpha() or not rest:
            raise ValueError(f"{value!r} is not an absolute URI (for example urn:hanse:city-a)")
        return value


class ProtocolSection(_Model):
    """The peer-facing protocol API (always mutual TLS)."""

    listen: str = "0.0.0.0:7443"
    """host:port to listen on; port 0 lets the OS choose."""
    advertised_address: str = ""
    """host:port peers use to reach this node (default: the listen address)."""
    max_request_bytes: int = Field(default=DEFAULT_MAX_REQUEST_BYTES, ge=1024, le=64 * 1024 * 1024)
    """Largest request accepted; larger ones are refused with REQUEST_TOO_LARGE."""
    peer_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """How long a call to a peer may take before it is answered PEER_UNAVAILABLE."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value, allow_empty=False)

    @field_validator("advertised_address")
    @classmethod
    def _advertised(cls, value: str) -> str:
        return _check_listen(value, allow_empty=True)


class ManagementSection(_Model):
    """The operator-facing management API (TLS + admin token)."""

    listen: str = "127.0.0.1:7444"
    """host:port; loopback by default, never published outside the cluster."""
    admin_token_file: Path = Path("secrets/admin.token")
    """File holding the admin bearer token."""
    max_request_bytes: int = Field(default=DEFAULT_MAX_REQUEST_BYTES, ge=1024, le=64 * 1024 * 1024)
    """Largest request accepted."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value, allow_empty=False)


class HealthSection(_Model):
    """A plaintext port serving only ``grpc.health.v1`` (for kubelet probes)."""

    listen: str = ""
    """host:port, or empty for none. Health is also served on both API ports."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value, allow_empty=True)


class MetricsSection(_Model):
    """Prometheus metrics over HTTP."""

    listen: str = "127.0.0.1:0"
    """host:port for ``/metrics``, or empty for none."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value, allow_empty=True)


class TLSSection(_Model):
    """The node's certificate, key and the federation trust bundle."""

    cert: Path
    """PEM certificate (URI SAN = participant id)."""
    key: Path
    """PEM private key."""
    trust_bundle: Path
    """PEM CA certificates whose node certificates are accepted."""


class DatabaseSection(_Model):
    """Where the node keeps its state."""

    url: str = ""
    """SQLAlchemy URL (sqlite:///... or postgresql://...); default SQLite in data_dir."""
    url_file: Path | None = None
    """File holding the URL (for a URL with a password, mounted from a Secret)."""

    @model_validator(mode="after")
    def _one_source(self) -> DatabaseSection:
        if self.url and self.url_file is not None:
            raise ValueError("give database.url or database.url_file, not both")
        if self.url and not self.url.startswith(("sqlite:", "postgresql:", "postgresql+")):
            raise ValueError("database.url must start with sqlite:/// or postgresql://")
        return self


class ColumnConfig(_Model):
    """One column of a dataset."""

    name: str = Field(min_length=1, max_length=128)
    """Column name as stored."""
    type: Literal["string", "integer", "float", "boolean", "timestamp", "date"]
    """Logical type."""
    description: str = ""
    """Description."""
    unit: str = ""
    """Unit of measure."""


class OfferConfig(_Model):
    """An offer: an ODRL policy for a dataset."""

    id: Identifier
    """Offer id, unique on the node."""
    auto_agree: bool = False
    """Agree requests that satisfy the policy without the operator."""
    policy: dict[str, Any] | None = None
    """The ODRL Offer inline."""
    policy_file: Path | None = None
    """Or a JSON or YAML file holding it."""

    @model_validator(mode="after")
    def _one_policy(self) -> OfferConfig:
        if (self.policy is None) == (self.policy_file is None):
            raise ValueError("give exactly one of policy or policy_file")
        return self


class SeriesConfig(_Model):
    """Which columns of a CSV or Parquet dataset form its time series (for training tasks)."""

    timestamp_column: str = Field(min_length=1, max_length=128)
    """The column holding each row's time (declared with type timestamp or date)."""
    value_column: str = Field(min_length=1, max_length=128)
    """The column holding the value to forecast (declared with type integer or float)."""


SERIES_TIME_TYPES = ("timestamp", "date")
"""Column types a series' timestamp column may have."""

SERIES_VALUE_TYPES = ("integer", "float")
"""Column types a series' value column may have."""


class DatasetConfig(_Model):
    """A dataset the node holds (metadata; rows stay where they are)."""

    id: Identifier
    """Dataset id, unique on the node."""
    title: str = Field(min_length=1, max_length=200)
    """Short title."""
    description: str = ""
    """Description."""
    keywords: list[str] = []
    """Search keywords."""
    format: Literal["csv", "parquet", "sql"]
    """Storage format."""
    path: Path | None = None
    """CSV or Parquet file (for format csv or parquet)."""
    sql_table: str = ""
    """Table in the node's database (for format sql)."""
    columns: list[ColumnConfig] = Field(min_length=1)
    """Column schema."""
    offers: list[OfferConfig] = []
    """Offers for this dataset."""
    series: SeriesConfig | None = None
    """The time series training tasks read (csv or parquet only); if omitted, inferred
    when exactly one column is a timestamp/date and exactly one is integer/float."""

    @model_validator(mode="after")
    def _source(self) -> DatasetConfig:
        if self.format == "sql":
            if not self.sql_table or self.path is not None:
                raise ValueError("format sql needs sql_table (and no path)")
        elif self.path is None or self.sql_table:
            raise ValueError(f"format {self.format} needs path (and no sql_table)")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        if self.series is not None:
            self._check_series(self.series)
        return self

    def _check_series(self, series: SeriesConfig) -> None:
        if self.format not in ("csv", "parquet"):
            raise ValueError(
                f"series: only a csv or parquet dataset can be read as a time series, this one "
                f"is format {self.format}; remove series or export the table to csv/parquet"
            )
        types = {c.name: c.type for c in self.columns}
        declared = ", ".join(types)
        for field, name, allowed in (
            ("timestamp_column", series.timestamp_column, SERIES_TIME_TYPES),
            ("value_column", series.value_column, SERIES_VALUE_TYPES),
        ):
            if name not in types:
                raise ValueError(
                    f"series.{field}: {name!r} is not a declared column (declared: {declared}); "
                    f"name one of them or add it to columns"
                )
            if types[name] not in allowed:
                raise ValueError(
                    f"series.{field}: column {name!r} has type {types[name]}, it needs type "
                    f"{' or '.join(allowed)}; map another column or correct its type in columns"
                )

    def series_mapping(self) -> SeriesConfig | None:
        """The dataset's series: as configured, else inferred, else None.

        Inferred for a csv or parquet dataset with exactly one column of type
        timestamp/date and exactly one of type integer/float.
        """
        if self.series is not None:
            return self.series
        if self.format not in ("csv", "parquet"):
            return None
        times = [c.name for c in self.columns if c.type in SERIES_TIME_TYPES]
        values = [c.name for c in self.columns if c.type in SERIES_VALUE_TYPES]
        if len(times) != 1 or len(values) != 1:
            return None
        return SeriesConfig(timestamp_column=times[0], value_column=values[0])


class PeerConfig(_Model):
    """A node this node talks to."""

    name: NodeName
    """Local short name."""
    participant_id: str
    """Its participant id (URI SAN of its certificate)."""
    address: str
    """Its protocol API, host:port."""
    fleet_address: str = ""
    """Its Flower SuperLink (Fleet API), host:port, if it aggregates training for us.

    A city node connects a SuperNode only to aggregators listed here: an agreement
    naming an aggregator without a fleet address never opens a connection."""
    memberships: list[str] = []
    """Groups this node places the peer in (for example ``urn:hanse:group:eu-cities``): the
    ``membership`` fact its requests are checked against. Only this list counts, never
    the peer's own claim; a peer not configured here belongs to no group."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _check_listen(value, allow_empty=False)

    @field_validator("fleet_address")
    @classmethod
    def _fleet_address(cls, value: str) -> str:
        return _check_listen(value, allow_empty=True)

    @field_validator("memberships")
    @classmethod
    def _memberships(cls, groups: list[str]) -> list[str]:
        for group in groups:
            if not group.strip():
                raise ValueError(
                    "a membership must name a group, for example urn:hanse:group:eu-cities "
                    f"(got {group!r})"
                )
            if group != group.strip():
                raise ValueError(f"membership {group!r} has spaces around it; remove them")
        _refuse_duplicates("membership", groups)
        return groups


class AggregatorSection(_Model):
    """This node as aggregator: a Flower SuperLink for its researchers' runs."""

    enabled: bool = False
    """Run a SuperLink (started with the first training run)."""
    listen: str = "127.0.0.1:0"
    """host:port of the SuperLink's HTTPS port (Fleet API for cities); port 0 picks one."""
    round_timeout_seconds: float = Field(default=600.0, gt=0, le=86400)
    """How long a round waits for cities' replies."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value, allow_empty=False)


class TrainingSection(_Model):
    """This node as a city that trains: device, differential privacy, connectivity."""

    device: Literal["cpu", "cuda"] = "cpu"
    """Where local training runs; cuda only if present (else the run is refused)."""
    noise_multiplier: float = Field(default=1.0, gt=0, le=100)
    """DP-SGD noise multiplier (the node's, never the researcher's)."""
    max_grad_norm: float = Field(default=1.0, gt=0, le=1000)
    """DP-SGD per-example gradient clipping norm."""
    default_delta: float = Field(default=1e-5, gt=0, lt=1)
    """Delta when an agreement states none."""
    max_train_examples: int = Field(default=0, ge=0)
    """Use at most this many of the most recent training examples per round (0: all)."""
    reconcile_seconds: float = Field(default=2.0, gt=0, le=3600)
    """How often the node re-checks which aggregators its agreements allow."""


class LogSection(_Model):
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written."""
    format: Literal["json", "text"] = "json"
    """json: one structured object per line; text: for people."""


class NodeConfig(_Model):
    """A whole node configuration file."""

    node: NodeSection
    """Who this node is."""
    tls: TLSSection
    """Certificate, key, trust bundle."""
    protocol: ProtocolSection = ProtocolSection()
    """Peer-facing API."""
    management: ManagementSection = ManagementSection()
    """Operator-facing API."""
    health: HealthSection = HealthSection()
    """Probe port."""
    metrics: MetricsSection = MetricsSection()
    """Prometheus endpoint."""
    database: DatabaseSection = DatabaseSection()
    """State store."""
    datasets: list[DatasetConfig] = []
    """Datasets and their offers."""
    peers: list[PeerConfig] = []
    """Known peers."""
    aggregator: AggregatorSection = AggregatorSection()
    """Aggregator role (researcher nodes)."""
    training: TrainingSection = TrainingSection()
    """Local training under agreements (city nodes)."""
    log: LogSection = LogSection()
    """Logging."""

    @field_validator("datasets")
    @classmethod
    def _unique_datasets(cls, datasets: list[DatasetConfig]) -> list[DatasetConfig]:
        _refuse_duplicates("dataset id", [d.id for d in datasets])
        _refuse_duplicates("offer id", [o.id for d in datasets for o in d.offers])
        return datasets

    @field_validator("peers")
    @classmethod
    def _unique_peers(cls, peers: list[PeerConfig]) -> list[PeerConfig]:
        _refuse_duplicates("peer name", [p.name for p in peers])
        _refuse_duplicates("peer participant_id", [p.participant_id for p in peers])
        return peers

    def peer_memberships(self) -> dict[str, frozenset[str]]:
        """The groups of each configured peer, by participant id (peers without any left out)."""
        return {p.participant_id: frozenset(p.memberships) for p in self.peers if p.memberships}


def _refuse_duplicates(label: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{label} {value!r} appears twice")
        seen.add(value)


class LoadedConfig:
    """A validated config with paths resolved against the file's folder."""

    def __init__(self, path: Path, model: NodeConfig) -> None:
        self.path = path
        self.model = model
        self.base = path.parent

    def resolve(self, value: Path) -> Path:
        """``value`` made absolute against the config file's folder."""
        return value if value.is_absolute() else (self.base / value).resolve()

    @property
    def data_dir(self) -> Path:
        """The node's data folder."""
        return self.resolve(self.model.node.data_dir)

    @property
    def endpoints_file(self) -> Path:
        """Where a running node writes the addresses it actually listens on."""
        return self.data_dir / "endpoints.json"

    def database_url(self) -> str:
        """The database URL: configured, read from url_file, or SQLite in data_dir."""
        section = self.model.database
        if section.url_file is not None:
            file = self.resolve(section.url_file)
            try:
                url = file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    self.path, "database.url_file", f"cannot read {file}: {exc.strerror}"
                ) from exc
            if not url:
                raise ConfigError(self.path, "database.url_file", f"{file} is empty")
            return url
        if section.url:
            if section.url.startswith("sqlite:///") and not section.url.startswith("sqlite:////"):
                relative = section.url.removeprefix("sqlite:///")
                return f"sqlite:///{self.resolve(Path(relative))}"
            return section.url
        return f"sqlite:///{self.data_dir / 'hanse.db'}"

    def admin_token(self) -> str:
        """The admin bearer token from ``management.admin_token_file``."""
        try:
            return read_token_file(self.resolve(self.model.management.admin_token_file))
        except AdminTokenError as exc:
            raise ConfigError(self.path, "management.admin_token_file", str(exc)) from exc

    def offer_policy(self, dataset: DatasetConfig, index: int) -> dict[str, Any]:
        """The normalised ODRL policy of ``dataset.offers[index]``."""
        offer = dataset.offers[index]
        field = f"datasets[{self.model.datasets.index(dataset)}].offers[{index}]"
        raw: Any = offer.policy
        if offer.policy_file is not None:
            file = self.resolve(offer.policy_file)
            try:
                raw = yaml.safe_load(file.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigError(
                    self.path, f"{field}.policy_file", f"cannot read {file}: {exc.strerror}"
                ) from exc
            except yaml.YAMLError as exc:
                raise ConfigError(
                    self.path, f"{field}.policy_file", f"{file} is not JSON or YAML: {exc}"
                ) from exc
        try:
            return normalize_offer_policy(raw, offer.id)
        except PolicyError as exc:
            sub = f"{field}.policy.{exc.path}" if exc.path else f"{field}.policy"
            raise ConfigError(self.path, sub, exc.message) from exc


def config_path(explicit: Path | str | None) -> Path:
    """The config file to use: ``explicit``, else ``$HANSE_CONFIG``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    raise ConfigError("(none)", "", f"no config file: pass --config FILE or set {CONFIG_ENV}")


def load_config(path: Path | str) -> LoadedConfig:
    """Read and validate a config file, including every offer's policy.

    Raises:
        ConfigError: the file is missing, not YAML, or a field is wrong.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(path, "", "file not found; create one with 'hanse node init'") from exc
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(path, where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            path, "", "the file must hold a YAML mapping with node, tls, ... sections"
        )
    try:
        model = NodeConfig.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = _field_path(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against docs/operator-guide.md"
        elif error["type"] == "missing":
            message = "required field is missing"
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more error{'s' if more > 1 else ''})"
        raise ConfigError(path, field, message) from exc
    loaded = LoadedConfig(path.resolve(), model)
    for dataset in model.datasets:
        for index in range(len(dataset.offers)):
            loaded.offer_policy(dataset, index)
    return loaded


def check_listen_host(value: str) -> str:
    """The host part of a listen address (``[::1]`` brackets removed)."""
    host = value.rpartition(":")[0]
    return host.strip("[]")


def is_loopback(address: str) -> bool:
    """Whether a listen address binds only loopback."""
    host = check_listen_host(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


__all__ = [
    "COLUMN_TYPES",
    "CONFIG_ENV",
    "DATASET_FORMATS",
    "ConfigError",
    "DatasetConfig",
    "LoadedConfig",
    "NodeConfig",
    "SeriesConfig",
    "config_path",
    "is_loopback",
    "load_config",
]

"""Tests for the node configuration file (node.config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from node.config import (
    CONFIG_ENV,
    DEFAULT_MAX_REQUEST_BYTES,
    ConfigError,
    LoadedConfig,
    config_path,
    is_loopback,
    load_config,
)

TOKEN = "a" * 20 + "-config-test-token-0123456789"

POLICY: dict[str, Any] = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}
            ],
        }
    ]
}


def _minimal() -> dict[str, Any]:
    return {
        "node": {"name": "city-a", "participant_id": "urn:hanse:city-a"},
        "tls": {"cert": "tls/node.crt", "key": "tls/node.key", "trust_bundle": "tls/ca.crt"},
    }


def _dataset(**overrides: Any) -> dict[str, Any]:
    dataset: dict[str, Any] = {
        "id": "pedestrians",
        "title": "Pedestrian counts",
        "format": "csv",
        "path": "data/counts.csv",
        "columns": [{"name": "count", "type": "integer"}],
    }
    dataset.update(overrides)
    return dataset


def _write(folder: Path, document: Any, name: str = "hanse.yaml") -> Path:
    path = folder / name
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    path.write_text(text, encoding="utf-8")
    return path


def _refusal(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return raised.value


def _loaded(tmp_path: Path, **sections: Any) -> LoadedConfig:
    document = _minimal()
    document.update(sections)
    return load_config(_write(tmp_path, document))


# --- valid files and defaults ---------------------------------------------------------------


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    # Prepare
    path = _write(tmp_path, _minimal())

    # Execute
    loaded = load_config(path)

    # Assert
    model = loaded.model
    assert loaded.path == path.resolve()
    assert loaded.base == tmp_path.resolve()
    assert model.node.name == "city-a"
    assert model.node.participant_id == "urn:hanse:city-a"
    assert model.node.data_dir == Path("data")
    assert model.protocol.listen == "0.0.0.0:7443"
    assert model.protocol.advertised_address == ""
    assert model.protocol.max_request_bytes == DEFAULT_MAX_REQUEST_BYTES
    assert model.management.listen == "127.0.0.1:7444"
    assert model.management.admin_token_file == Path("secrets/admin.token")
    assert model.management.max_request_bytes == DEFAULT_MAX_REQUEST_BYTES
    assert model.health.listen == ""
    assert model.metrics.listen == "127.0.0.1:0"
    assert model.database.url == ""
    assert model.database.url_file is None
    assert model.datasets == []
    assert model.peers == []
    assert model.log.level == "info"
    assert model.log.format == "json"


def test_config_with_dataset_offer_and_peer_loads(tmp_path: Path) -> None:
    # Prepare
    document = _minimal()
    document["datasets"] = [
        _dataset(offers=[{"id": "research", "auto_agree": True, "policy": POLICY}]),
        _dataset(id="tables", format="sql", sql_table="counts"),
    ]
    del document["datasets"][1]["path"]
    document["peers"] = [
        {"name": "city-b", "participant_id": "urn:hanse:city-b", "address": "10.0.0.2:7443"}
    ]

    # Execute
    loaded = load_config(_write(tmp_path, document))

    # Assert
    first, second = loaded.model.datasets
    assert first.path == Path("data/counts.csv")
    assert first.offers[0].auto_agree is True
    assert second.sql_table == "counts"
    assert second.path is None
    assert loaded.model.peers[0].address == "10.0.0.2:7443"


def test_offer_policy_is_normalised(tmp_path: Path) -> None:
    # Prepare
    loaded = _loaded(tmp_path, datasets=[_dataset(offers=[{"id": "research", "policy": POLICY}])])
    dataset = loaded.model.datasets[0]

    # Execute
    policy = loaded.offer_policy(dataset, 0)

    # Assert
    assert policy["@id"] == "research"
    assert policy["@type"] == "Offer"
    assert policy["permission"] == POLICY["permission"]


def test_offer_policy_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "research.yaml").write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    offers = [{"id": "research", "policy_file": "policies/research.yaml"}]
    loaded = _loaded(tmp_path, datasets=[_dataset(offers=offers)])

    # Execute
    policy = loaded.offer_policy(loaded.model.datasets[0], 0)

    # Assert
    assert policy["@id"] == "research"
    assert policy["permission"] == POLICY["permission"]


# --- paths relative to the file ---------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    # Prepare
    loaded = _loaded(tmp_path)

    # Execute
    relative = loaded.resolve(Path("tls/node.crt"))
    absolute = loaded.resolve(Path("/etc/hanse/node.crt"))

    # Assert
    assert relative == (tmp_path / "tls" / "node.crt").resolve()
    assert absolute == Path("/etc/hanse/node.crt")


def test_relative_paths_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = _write(config_dir, _minimal())
    monkeypatch.chdir(elsewhere)

    # Execute
    loaded = load_config(path)

    # Assert
    assert loaded.data_dir == (config_dir / "data").resolve()


def test_data_dir_defaults_to_data_next_to_the_file(tmp_path: Path) -> None:
    # Prepare
    loaded = _loaded(tmp_path)

    # Execute
    data_dir = loaded.data_dir

    # Assert
    assert data_dir == (tmp_path / "data").resolve()
    assert loaded.endpoints_file == data_dir / "endpoints.json"


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    # Prepare
    document = _minimal()
    document["node"]["data_dir"] = str(tmp_path / "state")
    loaded = load_config(_write(tmp_path, document))

    # Execute
    data_dir = loaded.data_dir

    # Assert
    assert data_dir == tmp_path / "state"


def test_database_url_defaults_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    # Prepare
    loaded = _loaded(tmp_path)

    # Execute
    url = loaded.database_url()

    # Assert
    assert url == f"sqlite:///{(tmp_path / 'data').resolve() / 'hanse.db'}"


def test_relative_sqlite_url_resolves_against_the_config_folder(tmp_path: Path) -> None:
    # Prepare
    loaded = _loaded(tmp_path, database={"url": "sqlite:///state/node.db"})

    # Execute
    url = loaded.database_url()

    # Assert
    assert url == f"sqlite:///{(tmp_path / 'state' / 'node.db').resolve()}"
    assert url.startswith("sqlite:////")


def test_absolute_sqlite_and_postgresql_urls_are_kept(tmp_path: Path) -> None:
    # Prepare
    absolute = _loaded(tmp_path, database={"url": "sqlite:////var/lib/hanse/node.db"})
    postgres_url = "postgresql://hanse:secret@db:5432/hanse"
    (tmp_path / "pg").mkdir()
    postgres = _loaded(tmp_path / "pg", database={"url": postgres_url})

    # Execute
    urls = (absolute.database_url(), postgres.database_url())

    # Assert
    assert urls == ("sqlite:////var/lib/hanse/node.db", postgres_url)


def test_database_url_file_is_read_and_stripped(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db.url").write_text(
        "  postgresql://hanse:pw@db/hanse\n", encoding="utf-8"
    )
    loaded = _loaded(tmp_path, database={"url_file": "secrets/db.url"})

    # Execute
    url = loaded.database_url()

    # Assert
    assert url == "postgresql://hanse:pw@db/hanse"


def test_missing_database_url_file_names_the_field(tmp_path: Path) -> None:
    # Prepare
    loaded = _loaded(tmp_path, database={"url_file": "secrets/db.url"})

    # Execute
    with pytest.raises(ConfigError) as raised:
        loaded.database_url()

    # Assert
    error = raised.value
    assert error.file == str(tmp_path.resolve() / "hanse.yaml")
    assert error.field == "database.url_file"
    assert "cannot read" in error.message
    assert str(tmp_path.resolve() / "secrets" / "db.url") in error.message


def test_empty_database_url_file_names_the_field(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "db.url").write_text("\n  \n", encoding="utf-8")
    loaded = _loaded(tmp_path, database={"url_file": "db.url"})

    # Execute
    with pytest.raises(ConfigError) as raised:
        loaded.database_url()

    # Assert
    assert raised.value.field == "database.url_file"
    assert raised.value.message.endswith("is empty")


def test_database_url_and_url_file_together_are_refused(tmp_path: Path) -> None:
    # Prepare
    document = _minimal()
    document["database"] = {"url": "sqlite:///x.db", "url_file": "db.url"}

    # Execute
    error = _refusal(_write(tmp_path, document))

    # Assert
    assert error.field == "database"
    assert "not both" in error.message


def test_database_url_of_another_kind_is_refused(tmp_path: Path) -> None:
    # Prepare
    document = _minimal()
    document["database"] = {"url": "mysql://db/hanse"}

    # Execute
    error = _refusal(_write(tmp_path, document))

    # Assert
    assert error.field == "database"
    assert "sqlite:///" in error.message


# --- admin token ------------------------------------------------------------------------------


def test_admin_token_is_read_relative_to_the_config(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "admin.token").write_text(TOKEN + "\n", encoding="utf-8")
    loaded = _loaded(tmp_path)

    # Execute
    token = loaded.admin_token()

    # Assert
    assert token == TOKEN


def test_missing_admin_token_names_the_field(tmp_path: Path) -> None:
    # Prepare
    loaded = _loaded(tmp_path)

    # Execute
    with pytest.raises(ConfigError) as raised:
        loaded.admin_token()

    # Assert
    error = raised.value
    assert error.file == str(tmp_path.resolve() / "hanse.yaml")
    assert error.field == "management.admin_token_file"
    assert "not found" in error.message
    assert not (tmp_path / "secrets").exists()


def test_short_admin_token_names_the_field(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "short.token").write_text("too-short", encoding="utf-8")
    loaded = _loaded(tmp_path, management={"admin_token_file": "short.token"})

    # Execute
    with pytest.raises(ConfigError) as raised:
        loaded.admin_token()

    # Assert
    assert raised.value.field == "management.admin_token_file"
    assert "at least 32" in raised.value.message
    assert (tmp_path / "short.token").read_text(encoding="utf-8") == "too-short"


# --- file-level errors ------------------------------------------------------------------------


def test_missing_file_is_refused(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "nowhere.yaml"

    # Execute
    error = _refusal(path)

    # Assert
    assert error.file == str(path)
    assert error.field == ""
    assert "file not found" in error.message
    assert "hanse node init" in error.message
    assert str(error) == f"{path}: {error.message}"


def test_file_that_is_not_yaml_names_the_line(tmp_path: Path) -> None:
    # Prepare
    path = _write(tmp_path, "node:\n  name: city-a\n  participant_id: [unclosed\n")

    # Execute
    error = _refusal(path)

    # Assert
    assert error.file == str(path)
    assert error.field.startswith("line ")
    assert "not valid YAML" in error.message
    assert str(error) == f"{path}: {error.field}: {error.message}"


@pytest.mark.parametrize("text", ["- node\n- tls\n", "just a string\n", ""])
def test_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    # Prepare
    path = _write(tmp_path, text)

    # Execute
    error = _refusal(path)

    # Assert
    assert error.file == str(path)
    assert error.field == ""
    assert "mapping" in error.message


# --- field errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "field"),
    [
        (None, "colour", "colour"),
        ("node", "colour", "node.colour"),
        ("protocol", "listn", "protocol.listn"),
    ],
)
def test_unknown_field_is_refused(
    tmp_path: Path, section: str | None, key: str, field: str
) -> None:
    # Prepare
    document = _minimal()
    (document if section is None else document.setdefault(section, {}))[key] = "x"
    path = _write(tmp_path, document)

    # Execute
    error = _refusal(path)

    # Assert
    assert error.file == str(path)
    assert error.field == field
    assert "unknown field" in error.message
    assert str(error) == f"{path}: {field}: {error.message}"


@pytest.mark.parametrize(
    ("remove", "field"),
    [
        (("tls",), "tls"),
        (("node", "participant_id"), "node.participant_id"),
        (("tls", "trust_bundle"), "tls.trust_bundle"),
    ],
)
def test_missing_required_field_is_refused(
    tmp_path: Path, remove: tuple[str, ...], field: str
) -> None:
    # Prepare
    document = _minimal()
    holder = document
    for key in remove[:-1]:
        holder = holder[key]
    del holder[remove[-1]]

    # Execute
    error = _refusal(_write(tmp_path, document))

    # Assert
    assert error.field == field
    assert error.message == "required field is missing"


def test_several_errors_report_the_first_and_count_the_rest(tmp_path: Path) -> None:
    # Prepare
    document = _minimal()
    del document["tls"]
    document["colour"] = "red"

    # Execute
    error = _refusal(_write(tmp_path, document))

    # Assert
    assert error.field in {"tls", "colour"}
    assert error.message.endswith("(and 1 more error)")


@pytest.mark.parametrize("participant_id", ["city-a", "urn:", "1urn:hanse:a", ":hanse"])
def test_participant_id_that_is_not_a_uri_is_refused(tmp_path: Path, participant_id: str) -> None:
    # Prepare
    document = _minimal()
    document["node"]["participant_id"] = participant_id

    # Execute
    error = _refusal(_write(tmp_path, document))

    # Assert
    assert error.field == "node.participant_id"
    assert "not an absolute URI" in error.message
    assert repr(participant_id) in error.message


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("protocol", "listen", "7443"),
        ("protocol", "listen", "0.0.0.0:"),
        ("protocol", "listen", ":7443"),
        ("protocol", "listen", "0.0.0.0:65536"),
        ("protocol", "listen", ""),
        ("protocol", "advertised_address", "city-a.example"),
        ("management", "listen", "localhost:http"),
        ("health", "listen", "0.0.0.0"),
        ("metrics", "listen", "127.0.0.1:-1"),
    ],
)
def test_bad_listen_address_is_refused(tmp_path: Path, section: str, key: str, value: str) -> None:
    # Prepare
    document = _minimal()
    document[section] = {key: value}

    # Execute
    error = _refusal(_write(tmp_path, document))

    # Assert
    assert error.field == f"{section}.{key}"
    assert "is not host:port" in error.message


@pytest.mark.parametrize("value", ["[::1]:7444", "localhost:0", "0.0.0.0:65535"])
def test_good_listen_addresses_are_accepted(tmp_path: Path, value: str) -> None:
    # Prepare
    document = _minimal()
    document["management"] = {"listen": value}

    # Execute
    loaded = load_config(_write(tmp_path, document))

    # Assert
    assert loaded.model.management.listen == value


def test_bad_peer_address_names_the_peer(tmp_path: Path) -> None:
    # Prepare
    document = _minimal()
    document["peers"] = [
        {"name": "city-b", "participant_id": "urn:hanse:city-b", "address": "10.0.0.2:7443"},
        {"name": "city-c", "participant_id": "urn:hanse:city-c", "address": "city-c"},
    ]

    # Execute
    error = _refusal(_write(tmp_path, document))

    # Assert
    assert error.field == "peers[1].address"
    assert "is not host:port" in error.message


@pytest.mark.parametrize("size", [1023, 64 * 1024 * 1024 + 1])
def test_max_request_bytes_out_of_range_is_refused(tmp_path: Path, size: int) -> None:
    # Prepare
    document = _minimal()
    document["protocol"] = {"max_request_bytes": size}

    # Execute
    error = _refusal(_write(tmp_path, document))

    # Assert
    assert error.field == "protocol.max_request_bytes"


def _duplicates(kind: str) -> dict[str, Any]:
    document = _minimal()
    if kind == "dataset id":
        document["datasets"] = [_dataset(), _dataset()]
    elif kind == "offer id":
        document["datasets"] = [
            _dataset(offers=[{"id": "research", "policy": POLICY}]),
            _dataset(id="other", offers=[{"id": "research", "policy": POLICY}]),
        ]
    else:
        document["peers"] = [
            {"name": "city-b", "participant_id": "urn:hanse:city-b", "address": "b:7443"},
            {"name": "city-b", "participant_id": "urn:hanse:city-c", "address": "c:7443"},
        ]
    return document


@pytest.mark.parametrize(
    ("kind", "value"),
    [("dataset id", "pedestrians"), ("offer id", "research"), ("peer name", "city-b")],
)
def test_duplicate_ids_are_refused(tmp_path: Path, kind: str, value: str) -> None:
    # Prepare
    path = _write(tmp_path, _duplicates(kind))

    # Execute
    error = _refusal(path)

    # Assert
    assert error.file == str(path)
    assert error.message == f"{kind} {value!r} appears twice"


@pytest.mark.parametrize(
    ("kind", "section"),
    [("dataset id", "datasets"), ("offer id", "datasets"), ("peer name", "peers")],
)
def test_duplicate_ids_name_the_field(tmp_path: Path, kind: str, section: str) -> None:
    # Prepare
    path = _write(tmp_path, _duplicates(kind))

    # Execute
    error = _refusal(path)

    # Assert
    assert error.field.startswith(section)


def test_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    # Prepare
    columns = [{"name": "count", "type": "integer"}, {"name": "count", "type": "float"}]
    path = _write(tmp_path, {**_minimal(), "datasets": [_dataset(columns=columns)]})

    # Execute
    error = _refusal(path)

    # Assert
    assert error.field == "datasets[0]"
    assert "column names must be unique" in error.message


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"format": "csv", "path": None}, "format csv needs path"),
        ({"format": "parquet", "path": None}, "format parquet needs path"),
        ({"format": "csv", "sql_table": "counts"}, "format csv needs path (and no sql_table)"),
        ({"format": "sql"}, "format sql needs sql_table"),
        ({"format": "sql", "path": None}, "format sql needs sql_table"),
    ],
)
def test_dataset_source_must_match_its_format(
    tmp_path: Path, overrides: dict[str, Any], needle: str
) -> None:
    # Prepare
    dataset = _dataset(**overrides)
    if dataset.get("path") is None:
        dataset.pop("path")
    path = _write(tmp_path, {**_minimal(), "datasets": [dataset]})

    # Execute
    error = _refusal(path)

    # Assert
    assert error.field == "datasets[0]"
    assert needle in error.message


def test_dataset_with_bad_column_type_names_the_column(tmp_path: Path) -> None:
    # Prepare
    columns = [{"name": "count", "type": "integer"}, {"name": "when", "type": "datetime"}]
    path = _write(tmp_path, {**_minimal(), "datasets": [_dataset(columns=columns)]})

    # Execute
    error = _refusal(path)

    # Assert
    assert error.field == "datasets[0].columns[1].type"


def test_dataset_with_bad_id_names_the_field(tmp_path: Path) -> None:
    # Prepare
    path = _write(tmp_path, {**_minimal(), "datasets": [_dataset(id="Pedestrians!")]})

    # Execute
    error = _refusal(path)

    # Assert
    assert error.field == "datasets[0].id"


@pytest.mark.parametrize(
    "offer",
    [
        {"id": "research", "policy": POLICY, "policy_file": "policy.yaml"},
        {"id": "research"},
    ],
)
def test_offer_needs_exactly_one_of_policy_and_policy_file(
    tmp_path: Path, offer: dict[str, Any]
) -> None:
    # Prepare
    path = _write(tmp_path, {**_minimal(), "datasets": [_dataset(offers=[offer])]})

    # Execute
    error = _refusal(path)

    # Assert
    assert error.field == "datasets[0].offers[0]"
    assert error.message == "give exactly one of policy or policy_file"


def test_missing_policy_file_names_the_offer(tmp_path: Path) -> None:
    # Prepare
    offers = [{"id": "research", "policy_file": "policies/missing.yaml"}]
    path = _write(tmp_path, {**_minimal(), "datasets": [_dataset(offers=offers)]})

    # Execute
    error = _refusal(path)

    # Assert
    assert error.file == str(path.resolve())
    assert error.field == "datasets[0].offers[0].policy_file"
    assert "cannot read" in error.message
    assert str(tmp_path.resolve() / "policies" / "missing.yaml") in error.message


def test_policy_file_that_is_not_yaml_names_the_offer(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "policy.yaml").write_text("permission: [ {action: use\n", encoding="utf-8")
    offers = [{"id": "research", "policy_file": "policy.yaml"}]
    path = _write(tmp_path, {**_minimal(), "datasets": [_dataset(offers=offers)]})

    # Execute
    error = _refusal(path)

    # Assert
    assert error.field == "datasets[0].offers[0].policy_file"
    assert "is not JSON or YAML" in error.message


def test_policy_with_unknown_left_operand_names_the_constraint(tmp_path: Path) -> None:
    # Prepare
    policy = {
        "permission": [
            {
                "action": "use",
                "constraint": [{"leftOperand": "colour", "operator": "eq", "rightOperand": "red"}],
            }
        ]
    }
    offers = [{"id": "ok", "policy": POLICY}, {"id": "research", "policy": policy}]
    path = _write(
        tmp_path,
        {**_minimal(), "datasets": [_dataset(id="first"), _dataset(offers=offers)]},
    )

    # Execute
    error = _refusal(path)

    # Assert
    field = "datasets[1].offers[1].policy.permission[0].constraint[0].leftOperand"
    assert error.file == str(path.resolve())
    assert error.field == field
    assert "unknown left operand 'colour'" in error.message
    assert str(error) == f"{path.resolve()}: {field}: {error.message}"


def test_policy_file_with_unknown_left_operand_names_the_constraint(tmp_path: Path) -> None:
    # Prepare
    policy = {
        "permission": [
            {
                "action": "use",
                "constraint": [{"leftOperand": "colour", "operator": "eq", "rightOperand": "red"}],
            }
        ]
    }
    (tmp_path / "policy.json").write_text(yaml.safe_dump(policy), encoding="utf-8")
    offers = [{"id": "research", "policy_file": "policy.json"}]
    path = _write(tmp_path, {**_minimal(), "datasets": [_dataset(offers=offers)]})

    # Execute
    error = _refusal(path)

    # Assert
    assert error.field == "datasets[0].offers[0].policy.permission[0].constraint[0].leftOperand"


def test_policy_error_without_a_path_names_the_policy(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "policy.yaml").write_text("- action: use\n", encoding="utf-8")
    offers = [{"id": "research", "policy_file": "policy.yaml"}]
    path = _write(tmp_path, {**_minimal(), "datasets": [_dataset(offers=offers)]})

    # Execute
    error = _refusal(path)

    # Assert
    assert error.field == "datasets[0].offers[0].policy"
    assert error.message == "a policy must be a JSON object"


# --- which file -------------------------------------------------------------------------------


def test_config_path_prefers_the_explicit_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv(CONFIG_ENV, "/etc/hanse/from-env.yaml")

    # Execute
    chosen = config_path("/srv/hanse.yaml")

    # Assert
    assert chosen == Path("/srv/hanse.yaml")


def test_config_path_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv(CONFIG_ENV, "/etc/hanse/from-env.yaml")

    # Execute
    chosen = config_path(None)

    # Assert
    assert chosen == Path("/etc/hanse/from-env.yaml")


@pytest.mark.parametrize("explicit", [None, ""])
def test_config_path_without_either_is_refused(
    monkeypatch: pytest.MonkeyPatch, explicit: str | None
) -> None:
    # Prepare
    monkeypatch.delenv(CONFIG_ENV, raising=False)

    # Execute
    with pytest.raises(ConfigError) as raised:
        config_path(explicit)

    # Assert
    assert raised.value.file == "(none)"
    assert raised.value.field == ""
    assert CONFIG_ENV in raised.value.message
    assert "--config" in raised.value.message


# --- loopback ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:7444", True),
        ("127.8.9.10:7444", True),
        ("localhost:7444", True),
        ("[::1]:7444", True),
        ("0.0.0.0:7444", False),
        ("[::]:7444", False),
        ("10.0.0.5:7444", False),
        ("hanse.example:7444", False),
        (":7444", False),
    ],
)
def test_is_loopback(address: str, expected: bool) -> None:
    # Prepare
    given = address

    # Execute
    result = is_loopback(given)

    # Assert
    assert result is expected

"""``hanse dataset`` and ``hanse offer``: manage your node's datasets and offers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import typer
import yaml
from google.protobuf import json_format
from pydantic import ValidationError

from connector.dsp import dataset_document
from connector.v1 import dataset_management_pb2 as pb
from connector.v1 import dataset_pb2
from connector.wire import dataset_to_pb
from node.cli.output import ConfigOption, console, fail, load, print_json, readable_errors, table
from node.client import NodeClient
from node.config import DatasetConfig
from node.server import dataset_from_config

dataset_app = typer.Typer(
    help="Datasets of your node (metadata; rows stay local).", no_args_is_help=True
)
offer_app = typer.Typer(help="Offers (ODRL policies) for your datasets.", no_args_is_help=True)


@dataset_app.command("list")
def dataset_list(
    config: Path = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List datasets with their offers."""
    datasets: list[dataset_pb2.Dataset] = []
    with readable_errors(), NodeClient(load(config)) as client:
        token = ""
        for _ in range(10_000):
            response = client.call(
                client.datasets.ListDatasets,
                pb.ListDatasetsRequest(page_size=500, page_token=token),
            )
            datasets.extend(response.datasets)
            token = response.next_page_token
            if not token:
                break
    if as_json:
        print_json([json_format.MessageToDict(d) for d in datasets])
        return
    table(
        "datasets",
        ["id", "title", "format", "offers"],
        [[d.id, d.title, d.format, ", ".join(o.id for o in d.offers) or "-"] for d in datasets],
    )


@dataset_app.command("show")
def dataset_show(
    dataset_id: str = typer.Argument(..., help="Dataset id."),
    config: Path = ConfigOption,
    dsp: bool = typer.Option(False, "--dsp", help="As a DSP 2025-1 Dataset JSON-LD."),
) -> None:
    """Show one dataset (JSON)."""
    with readable_errors():
        loaded = load(config)
        with NodeClient(loaded) as client:
            response = client.call(
                client.datasets.GetDataset, pb.GetDatasetRequest(dataset_id=dataset_id)
            )
    if dsp:
        print_json(dataset_document(response.dataset, loaded.model.node.participant_id))
    else:
        print_json(json_format.MessageToDict(response.dataset))


@dataset_app.command("add")
def dataset_add(
    file: Path = typer.Argument(
        ..., help="YAML/JSON file with one dataset, as in the node config."
    ),
    config: Path = ConfigOption,
    request_id: str = typer.Option("", help="Idempotency key (default: a new UUID)."),
) -> None:
    """Register a dataset (and the offers in the file)."""
    with readable_errors():
        loaded = load(config)
        raw = _read_mapping(file)
        try:
            declared = DatasetConfig.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise fail(f"{file}: {where}: {first['msg']}", 2) from exc
        holder = loaded.model.model_copy(update={"datasets": [declared]})
        from node.config import LoadedConfig

        scoped = LoadedConfig(file.resolve(), holder)
        dataset = dataset_from_config(scoped, declared)
        with NodeClient(loaded) as client:
            response = client.call(
                client.datasets.CreateDataset,
                pb.CreateDatasetRequest(
                    dataset=dataset_to_pb(dataset, public=False),
                    request_id=request_id or str(uuid.uuid4()),
                ),
            )
    console.print(
        f"dataset {response.dataset.id} registered with {len(response.dataset.offers)} offers"
    )


@dataset_app.command("delete")
def dataset_delete(
    dataset_id: str = typer.Argument(..., help="Dataset id."),
    config: Path = ConfigOption,
) -> None:
    """Remove a dataset and its offers (the data files stay)."""
    with readable_errors(), NodeClient(load(config)) as client:
        client.call(
            client.datasets.DeleteDataset,
            pb.DeleteDatasetRequest(dataset_id=dataset_id, request_id=str(uuid.uuid4())),
        )
    console.print(f"dataset {dataset_id} deleted")


@offer_app.command("add")
def offer_add(
    dataset_id: str = typer.Argument(..., help="Dataset the offer is for."),
    offer_id: str = typer.Option(..., "--id", help="Offer id."),
    policy: Path = typer.Option(..., "--policy", help="ODRL Offer policy, JSON or YAML file."),
    auto_agree: bool = typer.Option(False, help="Agree matching requests without you."),
    config: Path = ConfigOption,
) -> None:
    """Add an offer to a dataset."""
    with readable_errors():
        raw = _read_mapping(policy)
        with NodeClient(load(config)) as client:
            response = client.call(
                client.datasets.CreateOffer,
                pb.CreateOfferRequest(
                    offer=dataset_pb2.Offer(
                        id=offer_id,
                        dataset_id=dataset_id,
                        policy_json=json.dumps(raw),
                        auto_agree=auto_agree,
                    ),
                    request_id=str(uuid.uuid4()),
                ),
            )
    console.print(f"offer {response.offer.id} added to {response.offer.dataset_id}")


@offer_app.command("delete")
def offer_delete(
    offer_id: str = typer.Argument(..., help="Offer id."),
    config: Path = ConfigOption,
) -> None:
    """Remove an offer."""
    with readable_errors(), NodeClient(load(config)) as client:
        client.call(
            client.datasets.DeleteOffer,
            pb.DeleteOfferRequest(offer_id=offer_id, request_id=str(uuid.uuid4())),
        )
    console.print(f"offer {offer_id} deleted")


def _read_mapping(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}", 2) from exc
    except yaml.YAMLError as exc:
        raise fail(f"{file} is not JSON or YAML: {exc}", 2) from exc
    if not isinstance(data, dict):
        raise fail(f"{file} must hold one JSON/YAML object", 2)
    return data

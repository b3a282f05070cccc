"""The dataset store: datasets and their offers, kept in the node's database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, col, select

from connector.clock import Clock
from connector.datasets import Column, ColumnType, Dataset, DatasetFormat, DataSource, Offer
from connector.errors import ConnectorError, already_exists, invalid_argument, not_found
from connector.store.driver import Driver
from connector.store.sessions import SqlStoreBase
from connector.store.tables import DatasetRow, OfferRow

_ATTEMPTS = 3
"""How often a write that lost a race with another writer is tried in all."""


class DatasetStore(Protocol):
    """Datasets and offers a node holds.

    Every method is one transaction: a refusal (a :class:`ConnectorError`) leaves
    the store as it was. Returned datasets carry their offers, ordered by id.
    """

    def create_dataset(self, dataset: Dataset) -> Dataset:
        """Create a dataset together with its offers.

        Args:
            dataset: The dataset; its offers' ``dataset_id`` may be empty or its id.
                Times given are ignored.

        Returns:
            The dataset as stored, with create and update times set.

        Raises:
            ConnectorError: ``DATASET_ALREADY_EXISTS`` if the id is taken,
                ``OFFER_ALREADY_EXISTS`` if an offer id is taken or repeated,
                ``INVALID_ARGUMENT`` if an offer names another dataset.
        """
        ...

    def get_dataset(self, dataset_id: str) -> Dataset:
        """The dataset with this id.

        Raises:
            ConnectorError: ``DATASET_NOT_FOUND``.
        """
        ...

    def list_datasets(
        self,
        *,
        after_id: str = "",
        limit: int = 50,
        keyword: str = "",
        offered_only: bool = False,
    ) -> list[Dataset]:
        """Datasets ordered by id: one page of at most ``limit``.

        Args:
            after_id: Start after this id (the last id of the previous page).
            limit: Page size, at least 1.
            keyword: If set, only datasets with exactly this keyword.
            offered_only: Only datasets with at least one offer.

        Returns:
            The page; fewer than ``limit`` means there is no next page.
        """
        ...

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset and its offers.

        Raises:
            ConnectorError: ``DATASET_NOT_FOUND``.
        """
        ...

    def upsert_dataset(self, dataset: Dataset) -> Dataset:
        """Create a dataset or bring it in line with ``dataset`` (used at node start).

        The metadata is replaced (``update_time`` moves only if it changed) and the
        dataset's offers become exactly ``dataset.offers``: offers are matched by id,
        a kept offer keeps its create time, missing ones are deleted.

        Returns:
            The dataset as stored.

        Raises:
            ConnectorError: ``OFFER_ALREADY_EXISTS`` if an offer id belongs to another
                dataset or is repeated, ``INVALID_ARGUMENT`` if an offer names another
                dataset.
        """
        ...

    def create_offer(self, offer: Offer) -> Offer:
        """Add an offer to an existing dataset.

        Returns:
            The offer as stored, with its create time set.

        Raises:
            ConnectorError: ``DATASET_NOT_FOUND``, ``OFFER_ALREADY_EXISTS``.
        """
        ...

    def get_offer(self, offer_id: str) -> Offer:
        """The offer with this id.

        Raises:
            ConnectorError: ``OFFER_NOT_FOUND``.
        """
        ...

    def delete_offer(self, offer_id: str) -> None:
        """Delete an offer.

        Raises:
            ConnectorError: ``OFFER_NOT_FOUND``.
        """
        ...

    def count_datasets(self) -> int:
        """How many datasets the store holds."""
        ...


class SqlDatasetStore(SqlStoreBase):
    """A :class:`DatasetStore` in SQLite or PostgreSQL (tables ``dataset``, ``offer``)."""

    def __init__(self, engine: sa.Engine, clock: Clock | None = None) -> None:
        """Use a migrated database.

        Args:
            engine: From :func:`connector.store.create_engine`, after
                :func:`connector.store.migrate`.
            clock: Source of create and update times; the system clock by default.
        """
        super().__init__(engine, clock)
        self._driver = Driver(engine)
        self._sql_offer = self._driver.sql(_OFFER_SQL)

    def create_dataset(self, dataset: Dataset) -> Dataset:
        """See :meth:`DatasetStore.create_dataset`."""
        offers = _own_offers(dataset)
        now = self._now()
        try:
            with self._write() as session:
                self._refuse_taken_ids(session, dataset.id, offers)
                row = _dataset_row(dataset, create_time=now, update_time=now)
                offer_rows = [_offer_row(offer, create_time=now) for offer in offers]
                session.add(row)
                session.flush()
                session.add_all(offer_rows)
                session.flush()
                result = _dataset(row, offer_rows)
        except IntegrityError:
            # A concurrent writer took an id between the check and the insert.
            with self._read() as session:
                self._refuse_taken_ids(session, dataset.id, offers)
            raise
        return result

    def get_dataset(self, dataset_id: str) -> Dataset:
        """See :meth:`DatasetStore.get_dataset`."""
        with self._read() as session:
            row = _require_dataset(session, dataset_id)
            return _dataset(row, _offer_rows(session, [dataset_id]))

    def list_datasets(
        self,
        *,
        after_id: str = "",
        limit: int = 50,
        keyword: str = "",
        offered_only: bool = False,
    ) -> list[Dataset]:
        """See :meth:`DatasetStore.list_datasets`."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        query = select(DatasetRow).order_by(col(DatasetRow.id)).limit(limit)
        if after_id:
            query = query.where(col(DatasetRow.id) > after_id)
        if offered_only:
            query = query.where(sa.exists().where(col(OfferRow.dataset_id) == col(DatasetRow.id)))
        if keyword:
            query = query.where(_has_keyword(self._engine.dialect.name, keyword))
        with self._read() as session:
            rows = session.exec(query).all()
            offers = _offer_rows(session, [row.id for row in rows])
        by_dataset: dict[str, list[OfferRow]] = {}
        for offer in offers:
            by_dataset.setdefault(offer.dataset_id, []).append(offer)
        return [_dataset(row, by_dataset.get(row.id, [])) for row in rows]

    def delete_dataset(self, dataset_id: str) -> None:
        """See :meth:`DatasetStore.delete_dataset`."""
        with self._write() as session:
            # The offers go with it: the foreign key is ON DELETE CASCADE.
            deleted = session.exec(sa.delete(DatasetRow).where(col(DatasetRow.id) == dataset_id))
            if deleted.rowcount == 0:
                raise _dataset_not_found(dataset_id)

    def upsert_dataset(self, dataset: Dataset) -> Dataset:
        """See :meth:`DatasetStore.upsert_dataset`."""
        offers = _own_offers(dataset)
        for attempt in range(_ATTEMPTS):
            try:
                return self._upsert(dataset, offers)
            except (IntegrityError, StaleDataError):
                # Another node inserted (or removed) the same rows at the same moment:
                # try again, now seeing its changes.
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def create_offer(self, offer: Offer) -> Offer:
        """See :meth:`DatasetStore.create_offer`."""
        now = self._now()
        try:
            with self._write() as session:
                _require_dataset(session, offer.dataset_id)
                _refuse_taken_offer(session, offer.id)
                row = _offer_row(offer, create_time=now)
                session.add(row)
                session.flush()
                result = _offer(row)
        except IntegrityError:
            with self._read() as session:
                _require_dataset(session, offer.dataset_id)
                _refuse_taken_offer(session, offer.id)
            raise
        return result

    def get_offer(self, offer_id: str) -> Offer:
        """See :meth:`DatasetStore.get_offer`."""
        # Plain SQL (see connector.store.driver): every contract request reads its offer.
        driver = self._driver
        with driver.read() as cursor:
            cursor.execute(self._sql_offer, (offer_id,))
            found = cursor.fetchone()
        if found is None:
            raise _offer_not_found(offer_id)
        return Offer(
            id=found[0],
            dataset_id=found[1],
            policy=dict(driver.read_json(found[2])),
            auto_agree=bool(found[3]),
            create_time=driver.read_time(found[4]),
        )

    def delete_offer(self, offer_id: str) -> None:
        """See :meth:`DatasetStore.delete_offer`."""
        with self._write() as session:
            deleted = session.exec(sa.delete(OfferRow).where(col(OfferRow.id) == offer_id))
            if deleted.rowcount == 0:
                raise _offer_not_found(offer_id)

    def count_datasets(self) -> int:
        """See :meth:`DatasetStore.count_datasets`."""
        with self._read() as session:
            return session.exec(select(sa.func.count()).select_from(DatasetRow)).one()

    def _upsert(self, dataset: Dataset, offers: Sequence[Offer]) -> Dataset:
        now = self._now()
        with self._write() as session:
            _refuse_repeated_offers(offers)
            foreign = session.exec(
                select(OfferRow).where(
                    col(OfferRow.id).in_([offer.id for offer in offers]),
                    col(OfferRow.dataset_id) != dataset.id,
                )
            ).first()
            if foreign is not None:
                raise _offer_exists(foreign.id)
            row = session.get(DatasetRow, dataset.id)
            if row is None:
                row = _dataset_row(dataset, create_time=now, update_time=now)
                session.add(row)
            else:
                wanted = _dataset_row(dataset, create_time=row.create_time, update_time=now)
                if _metadata(row) != _metadata(wanted):
                    for name, value in _metadata(wanted).items():
                        setattr(row, name, value)
                    row.update_time = now
            session.flush()
            kept = {offer.id: offer for offer in _offer_rows(session, [dataset.id])}
            stale = set(kept) - {offer.id for offer in offers}
            if stale:
                # A statement, not session.delete(): another node may delete them too.
                session.exec(sa.delete(OfferRow).where(col(OfferRow.id).in_(sorted(stale))))
            offer_rows: list[OfferRow] = []
            for offer in offers:
                existing = kept.get(offer.id)
                if existing is None:
                    existing = _offer_row(offer, create_time=now)
                    session.add(existing)
                elif (existing.policy, existing.auto_agree) != (offer.policy, offer.auto_agree):
                    existing.policy = dict(offer.policy)
                    existing.auto_agree = offer.auto_agree
                offer_rows.append(existing)
            session.flush()
            return _dataset(row, offer_rows)

    def _refuse_taken_ids(self, session: Session, dataset_id: str, offers: Sequence[Offer]) -> None:
        if session.get(DatasetRow, dataset_id) is not None:
            raise already_exists(
                "DATASET_ALREADY_EXISTS",
                f"dataset {dataset_id!r} exists already",
                dataset_id=dataset_id,
            )
        _refuse_repeated_offers(offers)
        taken = session.exec(
            select(col(OfferRow.id))
            .where(col(OfferRow.id).in_([offer.id for offer in offers]))
            .order_by(col(OfferRow.id))
        ).first()
        if taken is not None:
            raise _offer_exists(taken)


def _own_offers(dataset: Dataset) -> list[Offer]:
    """The dataset's offers, each bound to the dataset, in id order."""
    offers: list[Offer] = []
    for offer in dataset.offers:
        if offer.dataset_id not in ("", dataset.id):
            raise invalid_argument(
                f"offer {offer.id!r} names dataset {offer.dataset_id!r} "
                f"but is given with dataset {dataset.id!r}",
                "dataset.offers.dataset_id",
            )
        offers.append(
            Offer(
                id=offer.id, dataset_id=dataset.id, policy=offer.policy, auto_agree=offer.auto_agree
            )
        )
    return sorted(offers, key=lambda offer: offer.id)


def _refuse_repeated_offers(offers: Sequence[Offer]) -> None:
    seen: set[str] = set()
    for offer in offers:
        if offer.id in seen:
            raise already_exists(
                "OFFER_ALREADY_EXISTS",
                f"offer id {offer.id!r} is given twice",
                offer_id=offer.id,
            )
        seen.add(offer.id)


def _refuse_taken_offer(session: Session, offer_id: str) -> None:
    if session.get(OfferRow, offer_id) is not None:
        raise _offer_exists(offer_id)


def _require_dataset(session: Session, dataset_id: str) -> DatasetRow:
    row = session.get(DatasetRow, dataset_id)
    if row is None:
        raise _dataset_not_found(dataset_id)
    return row


def _offer_rows(session: Session, dataset_ids: Iterable[str]) -> Sequence[OfferRow]:
    ids = list(dataset_ids)
    if not ids:
        return []
    return session.exec(
        select(OfferRow)
        .where(col(OfferRow.dataset_id).in_(ids))
        .order_by(col(OfferRow.dataset_id), col(OfferRow.id))
    ).all()


def _has_keyword(dialect: str, keyword: str) -> sa.ColumnElement[bool]:
    """Whether ``dataset.keywords`` (a JSON array) holds exactly ``keyword``."""
    function = sa.func.json_array_elements_text if dialect == "postgresql" else sa.func.json_each
    elements = function(DatasetRow.keywords).table_valued("value").alias("keyword")
    return sa.exists().select_from(elements).where(elements.c.value == keyword)


def _dataset_row(dataset: Dataset, *, create_time: datetime, update_time: datetime) -> DatasetRow:
    return DatasetRow(
        id=dataset.id,
        title=dataset.title,
        description=dataset.description,
        keywords=list(dataset.keywords),
        format=dataset.format,
        columns=[
            {
                "name": column.name,
                "type": column.type,
                "description": column.description,
                "unit": column.unit,
            }
            for column in dataset.columns
        ],
        source_path=dataset.source.path,
        source_sql_table=dataset.source.sql_table,
        create_time=create_time,
        update_time=update_time,
    )


def _metadata(row: DatasetRow) -> dict[str, object]:
    """The fields of a dataset row an upsert may change."""
    return {
        "title": row.title,
        "description": row.description,
        "keywords": row.keywords,
        "format": row.format,
        "columns": row.columns,
        "source_path": row.source_path,
        "source_sql_table": row.source_sql_table,
    }


def _offer_row(offer: Offer, *, create_time: datetime) -> OfferRow:
    return OfferRow(
        id=offer.id,
        dataset_id=offer.dataset_id,
        policy=dict(offer.policy),
        auto_agree=offer.auto_agree,
        create_time=create_time,
    )


def _dataset(row: DatasetRow, offers: Iterable[OfferRow]) -> Dataset:
    return Dataset(
        id=row.id,
        title=row.title,
        format=cast(DatasetFormat, row.format),
        source=DataSource(path=row.source_path, sql_table=row.source_sql_table),
        description=row.description,
        keywords=tuple(row.keywords),
        columns=tuple(
            Column(
                name=column["name"],
                type=cast(ColumnType, column["type"]),
                description=column.get("description", ""),
                unit=column.get("unit", ""),
            )
            for column in row.columns
        ),
        offers=tuple(_offer(offer) for offer in sorted(offers, key=lambda offer: offer.id)),
        create_time=row.create_time,
        update_time=row.update_time,
    )


_OFFER_SQL = "SELECT id, dataset_id, policy, auto_agree, create_time FROM offer WHERE id = ?"


def _offer(row: OfferRow) -> Offer:
    return Offer(
        id=row.id,
        dataset_id=row.dataset_id,
        policy=dict(row.policy),
        auto_agree=row.auto_agree,
        create_time=row.create_time,
    )


def _dataset_not_found(dataset_id: str) -> ConnectorError:
    return not_found(
        "DATASET_NOT_FOUND", f"no dataset {dataset_id!r} on this node", dataset_id=dataset_id
    )


def _offer_not_found(offer_id: str) -> ConnectorError:
    return not_found("OFFER_NOT_FOUND", f"no offer {offer_id!r} on this node", offer_id=offer_id)


def _offer_exists(offer_id: str) -> ConnectorError:
    return already_exists(
        "OFFER_ALREADY_EXISTS", f"offer {offer_id!r} exists already", offer_id=offer_id
    )

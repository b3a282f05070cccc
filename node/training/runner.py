"""The node's governed runner: one process per ClientApp task, in place of ``flwr-clientapp``.

The node's executor starts ``python -m node.training.task_process --config FILE
--aggregator ID`` (which runs :func:`main` here, in a process trimmed of import
and exit costs: :mod:`node.training.task_process`) for each message its SuperNode
receives from that aggregator.
Before any data is read the runner checks the run against the city's own copy of
the agreement the run names for this city: FINALIZED, unexpired, made with this
aggregator, for this task id and content hash, with no more rounds than agreed, a
privacy budget stated and, where the agreement states ``minParticipants``, at least
that many cities per round (the run's ``min_nodes``) among at least that many cities;
and, for a train message, that the agreement has rounds left
(counted over all its runs) and the dataset's privacy ledger has budget left. Only
then does it read the dataset and run the installed task inside the node's guard
(:func:`federation.clientapp.governed_client_app`), which enforces rounds and budget
exactly, round by round.
A refusal goes back to the researcher as a Flower error with its reason and is
written to the node's audit log.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.supercore.run import Run

from connector.agreement_terms import AgreementTerms, UseRefusedError, check_use
from connector.audit import AuditLog
from connector.clock import Clock, SystemClock
from connector.negotiation.states import Role
from connector.store import SqlAuditLog, SqlNegotiationStore, create_engine
from connector.store.ledger import SqlPrivacyLedger
from federation.clientapp import governed_client_app
from federation.flower.runtime import RunRefusedError, serve_task
from federation.guard.context import GuardConfigError, GuardContext
from federation.guard.rounds import is_train, rounds_used_up
from federation.runspec import RunSpec, RunSpecError
from federation.tasks import Task, TaskData, TaskDataError, TaskNotFoundError, load_task
from federation.training import DPSettings, TrainingError, TrainSettings, capped_train
from node.config import ConfigError, LoadedConfig, load_config
from node.training.agreements import AgreementNotFoundError, find_agreement
from node.training_data import series_source

_log = logging.getLogger("hanse.runner")


class GovernedRunner:
    """Builds the governed ClientApp for one message, or refuses it."""

    def __init__(self, loaded: LoadedConfig, aggregator: str, clock: Clock | None = None) -> None:
        """Check runs for ``aggregator`` against the agreements in ``loaded``'s database.

        Args:
            loaded: The city node's config (its database must be migrated).
            aggregator: The participant id of the aggregator the messages come from.
            clock: When "now" is, for expiry, audit and ledger times (system clock).
        """
        self.config = loaded
        self.aggregator = aggregator
        self.clock = clock or SystemClock()
        engine = create_engine(loaded.database_url())
        self.audit: AuditLog = SqlAuditLog(engine, self.clock)
        self.store = SqlNegotiationStore(engine, SqlAuditLog(engine, self.clock), self.clock)
        self.ledger = SqlPrivacyLedger(engine, self.clock)

    def app_for(self, message: Message, context: Context, run: Run) -> ClientApp:
        """The governed ClientApp for ``message``; audits and raises a refusal."""
        agreement = ""
        try:
            spec = _spec(context)
            agreement = spec.agreements.get(self.config.model.node.participant_id, "")
            terms = self._terms(spec, agreement)
            _check_participants(spec, terms, run)
            task = self._task(spec)
            self._check_left(spec, terms, message)
            data = self._data(task, terms)
            guard = self._guard(spec, terms, task, data)
        except RunRefusedError as exc:
            self.audit.append(
                "training.refused",
                actor="node",
                peer=self.aggregator,
                subject=agreement,
                payload={
                    "reason": str(exc),
                    "run": str(run.run_id),
                    "messageType": message.metadata.message_type,
                },
            )
            raise
        _log.info(
            "run %s: %s under agreement %s on %s",
            run.run_id,
            message.metadata.message_type,
            terms.agreement_id,
            terms.dataset_id,
        )
        return governed_client_app(
            task, lambda: data, guard, device=self.config.model.training.device
        )

    def _terms(self, spec: RunSpec, agreement: str) -> AgreementTerms:
        me = self.config.model.node.participant_id
        if not agreement:
            raise RunRefusedError(f"the run names no agreement for {me}")
        try:
            record = find_agreement(self.store, agreement, Role.PROVIDER)
            terms = check_use(
                record,
                consumer=self.aggregator,
                task_id=spec.task_id,
                task_hash=spec.task_hash,
                rounds=spec.rounds,
                now=self.clock.now(),
            )
        except (AgreementNotFoundError, UseRefusedError) as exc:
            raise RunRefusedError(str(exc)) from exc
        if terms.aggregator != self.aggregator:
            raise RunRefusedError(
                f"agreement {terms.agreement_id} names aggregator {terms.aggregator}, "
                f"not {self.aggregator}"
            )
        if not terms.task_hash:
            raise RunRefusedError(
                f"agreement {terms.agreement_id} does not pin the task's content hash; "
                "only a task fixed by id and hash may read this node's data"
            )
        if terms.max_rounds is None:
            raise RunRefusedError(f"agreement {terms.agreement_id} states no maxRounds")
        if terms.epsilon is None:
            raise RunRefusedError(
                f"agreement {terms.agreement_id} states no privacy budget (epsilon)"
            )
        if terms.epsilon <= 0:
            raise RunRefusedError(
                f"agreement {terms.agreement_id} states epsilon {terms.epsilon:g}; "
                "DP-SGD training needs a privacy budget above 0"
            )
        if terms.delta is not None and not 0 < terms.delta < 1:
            raise RunRefusedError(
                f"agreement {terms.agreement_id} states delta {terms.delta:g}; "
                "DP-SGD training needs a delta between 0 and 1 (e.g. 1e-5)"
            )
        return terms

    def _task(self, spec: RunSpec) -> Task:
        try:
            task = load_task(spec.task_id)
        except TaskNotFoundError as exc:
            raise RunRefusedError(str(exc)) from exc
        if task.content_hash() != spec.task_hash:
            raise RunRefusedError(
                f"this node's task {task.id} has hash {task.content_hash()}, "
                f"the run asks for {spec.task_hash}"
            )
        return task

    def _check_left(self, spec: RunSpec, terms: AgreementTerms, message: Message) -> None:
        """Refuse a train message when the agreement's rounds or the dataset's budget are used up.

        The agreement's rounds are counted over all its runs. The guard enforces both
        exactly; this spares reading the dataset for a round that cannot run (each
        message gets a runner of its own).
        """
        if not is_train(message) or terms.max_rounds is None:
            return
        used_up = rounds_used_up(self.ledger, terms.agreement_id, terms.max_rounds)
        if used_up:
            raise RunRefusedError(f"{used_up}; negotiate a new agreement for more rounds")
        budget = _budget(spec, terms)
        spent = self.ledger.total_epsilon(terms.dataset_id)
        if spent >= budget:
            raise RunRefusedError(
                f"dataset {terms.dataset_id} has spent epsilon {spent:.4f} of the budget "
                f"{budget:g} agreement {terms.agreement_id} allows; ask the data holder for a "
                "new budget"
            )

    def _data(self, task: Task, terms: AgreementTerms) -> TaskData:
        try:
            data = task.load(series_source(self.config, terms.dataset_id))
        except (ConfigError, TaskDataError) as exc:
            raise RunRefusedError(f"dataset {terms.dataset_id} cannot be read: {exc}") from exc
        return capped_train(data, self.config.model.training.max_train_examples)

    def _guard(
        self, spec: RunSpec, terms: AgreementTerms, task: Task, data: TaskData
    ) -> GuardContext:
        training = self.config.model.training
        if terms.max_rounds is None:  # _terms refuses this first
            raise RunRefusedError(f"agreement {terms.agreement_id} states no maxRounds")
        tls = self.config.model.tls
        try:
            return GuardContext(
                agreement_id=terms.agreement_id,
                dataset_id=terms.dataset_id,
                max_rounds=terms.max_rounds,
                epsilon_budget=_budget(spec, terms),
                dp=DPSettings(
                    noise_multiplier=training.noise_multiplier,
                    max_grad_norm=training.max_grad_norm,
                    delta=training.default_delta if terms.delta is None else terms.delta,
                ),
                train=TrainSettings(
                    epochs=spec.local_epochs,
                    batch_size=spec.batch_size,
                    learning_rate=spec.learning_rate,
                    optimizer=spec.optimizer,
                ),
                train_examples=len(data.train),  # type: ignore[arg-type]
                metric_keys=tuple(task.metrics),
                certificate_pem=self.config.resolve(tls.cert).read_bytes(),
                key_pem=self.config.resolve(tls.key).read_bytes(),
                database_url=self.config.database_url(),
                aggregator=self.aggregator,
                clock=self.clock,
            )
        except (GuardConfigError, TrainingError) as exc:
            raise RunRefusedError(
                f"agreement {terms.agreement_id} cannot be enforced as stated: {exc}"
            ) from exc


def _check_participants(spec: RunSpec, terms: AgreementTerms, run: Run) -> None:
    """Refuse a run whose rounds may have fewer cities than the agreement's ``minParticipants``.

    The node-owned ServerApp waits for ``spec.min_nodes`` cities a round, among the
    cities ``spec.agreements`` names; both must reach the number the consumer stated.
    """
    needed = terms.min_participants
    if needed is None:
        return
    floor = (
        f"agreement {terms.agreement_id} allows training only in rounds of at least "
        f"{needed} cities and run {run.run_id}"
    )
    cities = len(spec.agreements)
    if cities < needed:
        named = f"{cities} city" if cities == 1 else f"{cities} cities"
        raise RunRefusedError(
            f"{floor} names only {named} (--agreement); start a run with the agreements of "
            f"at least {needed} cities and --min-nodes {needed} or more"
        )
    if spec.min_nodes < needed:
        raise RunRefusedError(
            f"{floor} asks for at least {spec.min_nodes} (--min-nodes); start the run with "
            f"--min-nodes {needed} or more"
        )
    if spec.min_aggregate < needed:
        raise RunRefusedError(
            f"{floor} would aggregate rounds of {spec.min_aggregate or 'any number of'} "
            "cities (hanse-min-aggregate); the aggregator's node sets it from the agreements' "
            "minParticipants, so start the run again from an up-to-date node"
        )


def _budget(spec: RunSpec, terms: AgreementTerms) -> float:
    """The epsilon the dataset may reach: the agreement's, or the run's cap if lower."""
    if terms.epsilon is None:  # _terms refuses this first
        raise RunRefusedError(f"agreement {terms.agreement_id} states no privacy budget (epsilon)")
    return min(terms.epsilon, spec.epsilon) if spec.epsilon > 0 else terms.epsilon


def _spec(context: Context) -> RunSpec:
    try:
        return RunSpec.from_run_config(context.run_config)
    except RunSpecError as exc:
        raise RunRefusedError(f"the run's settings are invalid: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one task; the exit code is 0 if the ClientApp answered."""
    parser = argparse.ArgumentParser(description="Hanse governed ClientApp runner")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--aggregator", required=True)
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runner = GovernedRunner(load_config(args.config), args.aggregator)
    return serve_task(args.runtime_api_address, args.token, runner.app_for)


if __name__ == "__main__":
    sys.exit(main())

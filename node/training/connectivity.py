"""A city's SuperNodes follow its agreements: one per aggregator an agreement allows now.

Every few seconds the node lists its FINALIZED agreements as provider, keeps those
whose policy still permits the stated use now (not expired, not terminated), whose
privacy budget is not spent and whose training rounds (``maxRounds``, counted over all
its runs) are not all used (or were used up less than :data:`ROUNDS_GRACE` ago, so the
last run can still evaluate its final model), and that state what the runner enforces (task
hash, rounds, epsilon), and groups them by aggregator. It starts a SuperNode towards
each such aggregator that its config lists with a fleet address and whose
SuperLink's certificate names that aggregator, and stops every SuperNode whose last
agreement ended. A SuperNode that exits (for example because the aggregator has not
registered this node's key) is started again after a delay that doubles with each
exit, up to :data:`RESTART_DELAY_MAX`. Each start and stop is audited, with the reason.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from connector.audit import AuditLog
from connector.clock import Clock, SystemClock
from connector.identity.peer import fetch_server_participant_id
from connector.identity.tls import IdentityError, TLSFiles, load_tls
from connector.negotiation.model import NegotiationRecord, NegotiationStore
from connector.negotiation.states import NegotiationState, Role
from connector.negotiation.usage import usage_request
from connector.policy import PolicyError, evaluate
from connector.store.ledger import SqlPrivacyLedger
from federation.flower.process import FlowerProcessError
from federation.flower.supernode import SuperNode, SuperNodeSettings
from node.config import LoadedConfig
from node.training.agreements import AgreementNotFoundError, find_agreement, negotiations

_log = logging.getLogger(__name__)

SpentEpsilon = Callable[[str], float]
"""Dataset id -> epsilon its privacy ledger has spent so far."""

AgreementRounds = Callable[[str], tuple[int, datetime | None]]
"""Agreement id -> the training rounds its runs have used so far, all runs together,
and when the newest of them was recorded (None if none)."""

ROUNDS_GRACE = timedelta(minutes=30)
"""How long an agreement whose rounds are all used still allows its aggregator after
its last round was recorded. The run that used the last round still evaluates the final
model (evaluation is no training round, so it is never refused for rounds), and other
cities may still be training that round; stopping the SuperNode at once would fail that
evaluation. Generous on purpose: training under the agreement is refused all the same."""

RESTART_DELAY_MAX = timedelta(minutes=5)
"""The longest wait before a SuperNode that exited is started again."""

STABLE_AFTER = timedelta(minutes=1)
"""A SuperNode alive this long after its start resets the restart delay."""


@dataclass(frozen=True)
class Allowed:
    """An aggregator this node may connect to now, and why."""

    aggregator: str
    fleet_address: str
    agreements: tuple[str, ...]


def allowed_aggregators(
    records: list[NegotiationRecord],
    fleet_addresses: Mapping[str, str],
    spent: SpentEpsilon,
    clock: Clock,
    rounds: AgreementRounds,
) -> tuple[dict[str, Allowed], dict[str, str]]:
    """Which aggregators the agreements allow now, and why the others are not.

    An agreement whose privacy budget is spent (``spent``), or whose ``maxRounds`` are
    all used (``rounds``) since :data:`ROUNDS_GRACE` or longer, allows no aggregator,
    like an expired one.

    Returns:
        The allowed aggregators by participant id, and for each aggregator some
        agreement names but that is not allowed, the reason.
    """
    now = clock.now()
    grouped: dict[str, list[str]] = {}
    blocked: dict[str, str] = {}
    for record in records:
        if record.role != Role.PROVIDER or record.state != NegotiationState.FINALIZED:
            continue
        usage = record.usage
        aggregator = str(usage.get("aggregator") or record.counterparty_id)
        name = str((record.agreement or {}).get("@id", record.id))
        try:
            decision = evaluate(
                record.agreement or {},
                usage_request(usage, assignee=record.counterparty_id),
                now=now,
            )
        except PolicyError as exc:
            blocked.setdefault(aggregator, f"agreement {name} is unreadable: {exc}")
            continue
        if not decision.permitted:
            blocked.setdefault(
                aggregator, f"agreement {name} no longer applies: {decision.reason()}"
            )
            continue
        unenforceable = _unenforceable(usage)
        if unenforceable:
            blocked.setdefault(
                aggregator, f"agreement {name} {unenforceable}, so no run may use it"
            )
            continue
        epsilon = usage.get("epsilon")
        if isinstance(epsilon, int | float) and spent(record.dataset_id) >= float(epsilon):
            blocked.setdefault(
                aggregator, f"agreement {name}: the privacy budget of {record.dataset_id} is spent"
            )
            continue
        max_rounds = usage.get("max_rounds")
        used, last = rounds(name)
        if (
            isinstance(max_rounds, int | float)
            and used >= max_rounds
            and (last is None or now - last >= ROUNDS_GRACE)
        ):
            blocked.setdefault(
                aggregator, f"agreement {name}: its {max_rounds:g} training round(s) are all used"
            )
            continue
        if aggregator not in fleet_addresses:
            blocked.setdefault(
                aggregator,
                f"agreement {name} names aggregator {aggregator}, which is not a peer with a "
                "fleet_address in this node's config",
            )
            continue
        grouped.setdefault(aggregator, []).append(name)
    allowed = {
        agg: Allowed(agg, fleet_addresses[agg], tuple(sorted(names)))
        for agg, names in grouped.items()
    }
    return allowed, {agg: why for agg, why in blocked.items() if agg not in allowed}


def _unenforceable(usage: Mapping[str, object]) -> str:
    """What the usage lacks that the governed runner requires, or ""."""
    task = usage.get("task")
    if not isinstance(task, Mapping) or not task.get("hash"):
        return "does not pin the task's content hash"
    rounds = usage.get("max_rounds")
    if isinstance(rounds, bool) or not isinstance(rounds, int | float) or rounds < 1:
        return "states no maxRounds"
    epsilon = usage.get("epsilon")
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not epsilon > 0:
        return "states no privacy budget (epsilon above 0)"
    return ""


def ledger_rounds(ledger: SqlPrivacyLedger) -> AgreementRounds:
    """Each agreement's rounds used over all its runs, and when the last, from ``ledger``."""

    def rounds(agreement_id: str) -> tuple[int, datetime | None]:
        return ledger.rounds_used(agreement_id), ledger.last_round_time(agreement_id)

    return rounds


def _no_rounds(agreement_id: str) -> tuple[int, datetime | None]:
    """No rounds used: for a :class:`Connectivity` not given the ledger's count."""
    return 0, None


@dataclass(frozen=True)
class _Restart:
    """When a SuperNode that exited may be started again."""

    exits: int
    """Exits in a row, each within :data:`STABLE_AFTER` of its start."""
    not_before: datetime
    """The earliest time of the next start."""


class Connectivity:
    """Keeps one SuperNode per allowed aggregator; a background thread reconciles."""

    def __init__(
        self,
        loaded: LoadedConfig,
        store: NegotiationStore,
        audit: AuditLog,
        spent: SpentEpsilon,
        clock: Clock | None = None,
        rounds: AgreementRounds | None = None,
    ) -> None:
        """Follow the FINALIZED provider agreements in ``store``.

        Args:
            loaded: The city node's config (peers' fleet addresses, TLS, training).
            store: The node's negotiations.
            audit: Where SuperNode starts and stops are written.
            spent: The epsilon each dataset's privacy ledger has spent.
            clock: When "now" is, for expiry and restart delays (system clock).
            rounds: The training rounds each agreement has used over all its runs, and
                when the last (:func:`ledger_rounds`); None counts none here (the runner
                and the guard refuse used-up rounds all the same).
        """
        self._config = loaded
        self._store = store
        self._audit = audit
        self._spent = spent
        self._rounds = rounds or _no_rounds
        self._clock = clock or SystemClock()
        self._nodes: dict[str, SuperNode] = {}
        self._grants: dict[str, Allowed] = {}
        self._started_at: dict[str, datetime] = {}
        self._restarts: dict[str, _Restart] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="connectivity", daemon=True)
        self.blocked: dict[str, str] = {}
        """Aggregators an agreement names that this node does not connect to, and why."""

    def start(self) -> None:
        """Reconcile now and then every ``training.reconcile_seconds``."""
        self._thread.start()

    def connected(self) -> dict[str, str]:
        """Aggregator participant id -> fleet address, for each running SuperNode."""
        with self._lock:
            return {agg: node.settings.superlink for agg, node in self._nodes.items()}

    def _loop(self) -> None:
        interval = self._config.model.training.reconcile_seconds
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception:
                _log.exception("reconciling SuperNodes with agreements failed")
            self._stop.wait(interval)

    def reconcile(self) -> None:
        """Start and stop SuperNodes so they match the agreements that apply now."""
        fleet = {
            p.participant_id: p.fleet_address for p in self._config.model.peers if p.fleet_address
        }
        records = list(negotiations(self._store, state=NegotiationState.FINALIZED.value))
        allowed, blocked = allowed_aggregators(
            records, fleet, self._spent, self._clock, self._rounds
        )
        now = self._clock.now()
        with self._lock:
            previous, self.blocked = self.blocked, blocked
            for aggregator in sorted(set(self._nodes) - set(allowed)):
                reason = blocked.get(aggregator) or self._ended(aggregator)
                self._stop_node(aggregator, reason)
            for aggregator in set(self._restarts) - set(allowed):
                del self._restarts[aggregator]
            for aggregator, grant in sorted(allowed.items()):
                current = self._nodes.get(aggregator)
                if current is not None and current.alive():
                    self._grants[aggregator] = grant
                    if now - self._started_at[aggregator] >= STABLE_AFTER:
                        self._restarts.pop(aggregator, None)
                    continue
                if current is not None:
                    retry = self._exited(aggregator, now)
                    self._stop_node(
                        aggregator,
                        "the SuperNode process exited (has the aggregator registered this "
                        f"node's key?); it is started again at {retry.not_before.isoformat()} "
                        "at the earliest",
                    )
                retry_at = self._restarts.get(aggregator)
                if retry_at is not None and now < retry_at.not_before:
                    self.blocked[aggregator] = (
                        f"the SuperNode towards {grant.fleet_address} exited "
                        f"{retry_at.exits} time(s); next start at {retry_at.not_before.isoformat()}"
                    )
                    continue
                problem = self._identity_problem(grant)
                if not problem:
                    try:
                        node = self._start(grant)
                    except (FlowerProcessError, OSError) as exc:
                        # One aggregator that cannot be reached must not keep the others waiting.
                        problem = (
                            f"the SuperNode towards {grant.fleet_address} did not start: {exc}"
                        )
                if problem:
                    self.blocked[aggregator] = problem
                    if previous.get(aggregator) != problem:  # say it once, not every few seconds
                        _log.warning("not connecting to %s: %s", aggregator, problem)
                    continue
                self._nodes[aggregator] = node
                self._grants[aggregator] = grant
                self._started_at[aggregator] = now
                self._audit.append(
                    "training.supernode.started",
                    actor="node",
                    peer=aggregator,
                    payload={
                        "fleetAddress": grant.fleet_address,
                        "agreements": list(grant.agreements),
                    },
                )

    def _exited(self, aggregator: str, now: datetime) -> _Restart:
        """Note that the SuperNode towards ``aggregator`` exited; when to start it again."""
        last = self._restarts.get(aggregator)
        exits = 1 if last is None else last.exits + 1
        base = timedelta(seconds=self._config.model.training.reconcile_seconds)
        delay = min(base * 2 ** min(exits, 20), RESTART_DELAY_MAX)
        retry = self._restarts[aggregator] = _Restart(exits, now + delay)
        return retry

    def _stop_node(self, aggregator: str, reason: str) -> None:
        """Stop the SuperNode towards ``aggregator`` and audit why (holding the lock)."""
        node = self._nodes.pop(aggregator)
        self._grants.pop(aggregator, None)
        self._started_at.pop(aggregator, None)
        node.stop()
        _log.info("stopped SuperNode towards %s: %s", aggregator, reason)
        self._audit.append(
            "training.supernode.stopped",
            actor="node",
            peer=aggregator,
            payload={"fleetAddress": node.settings.superlink, "reason": reason},
        )

    def _ended(self, aggregator: str) -> str:
        """Why the agreements a running SuperNode was started for no longer hold."""
        grant = self._grants.get(aggregator)
        reasons = []
        for name in grant.agreements if grant is not None else ():
            try:
                record = find_agreement(self._store, name, Role.PROVIDER)
            except AgreementNotFoundError:
                reasons.append(f"agreement {name} is no longer on this node")
                continue
            if record.state != NegotiationState.FINALIZED:
                why = f" ({record.reason})" if record.reason else ""
                reasons.append(f"agreement {name} is {record.state.value}{why}")
        return "; ".join(reasons) or "no agreement names this aggregator any more"

    def _identity_problem(self, grant: Allowed) -> str:
        """Why the SuperLink at the fleet address is not the aggregator, or ""."""
        tls = self._config.model.tls
        files = TLSFiles(
            cert=self._config.resolve(tls.cert),
            key=self._config.resolve(tls.key),
            trust_bundle=self._config.resolve(tls.trust_bundle),
        )
        try:
            presented = fetch_server_participant_id(grant.fleet_address, load_tls(files))
        except IdentityError as exc:
            return f"cannot verify the SuperLink at {grant.fleet_address}: {exc}"
        if presented != grant.aggregator:
            return f"the SuperLink at {grant.fleet_address} is {presented}, not {grant.aggregator}"
        return ""

    def _start(self, grant: Allowed) -> SuperNode:
        tls = self._config.model.tls
        safe = grant.aggregator.replace(":", "_").replace("/", "_")
        return SuperNode(
            SuperNodeSettings(
                superlink=grant.fleet_address,
                trust_bundle=self._config.resolve(tls.trust_bundle),
                node_key=self._config.resolve(tls.key),
                state_dir=self._config.data_dir / "supernodes" / safe,
                runner_command=[
                    sys.executable,
                    "-m",
                    "node.training.task_process",
                    "--config",
                    str(self._config.path.resolve()),
                    "--aggregator",
                    grant.aggregator,
                ],
            )
        )

    def stop(self) -> None:
        """Stop reconciling and every SuperNode."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        with self._lock:
            for aggregator in sorted(self._nodes):
                try:
                    self._stop_node(aggregator, "the node is stopping")
                except Exception:  # stopping the rest matters more than one audit entry
                    _log.exception("stopping the SuperNode towards %s failed", aggregator)
            self._nodes.clear()
            self._grants.clear()
            self._restarts.clear()

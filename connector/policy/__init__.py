"""ODRL policies as Hanse reads them: their shape, and their evaluation against a request.

:mod:`connector.policy.shape` checks and normalises an offer's policy;
:mod:`connector.policy.evaluation` decides whether a policy permits a usage request.
"""

from connector.policy.evaluation import ConstraintResult, Decision, UsageRequest, evaluate
from connector.policy.shape import (
    LEFT_OPERANDS,
    LOGICAL_OPERATORS,
    MAX_DEPTH,
    OPERATORS,
    RULE_KINDS,
    PolicyError,
    normalize_offer_policy,
    typed_literal,
)

__all__ = [
    "LEFT_OPERANDS",
    "LOGICAL_OPERATORS",
    "MAX_DEPTH",
    "OPERATORS",
    "RULE_KINDS",
    "ConstraintResult",
    "Decision",
    "PolicyError",
    "UsageRequest",
    "evaluate",
    "normalize_offer_policy",
    "typed_literal",
]

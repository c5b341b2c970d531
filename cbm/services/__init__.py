"""The service layer: the only code that writes. Every entry point calls these functions."""

from cbm.services.records import (
    SYSTEM,
    Actor,
    DeleteRefused,
    UpsertResult,
    delete_record,
    state_resolver,
    upsert_activities,
    upsert_ceilings,
    upsert_holdings,
    upsert_inspections,
    upsert_notifications,
    upsert_observation_flights,
    upsert_quotas,
    upsert_records,
    upsert_reductions,
)
from cbm.services.validation import RowError, StateResolver

__all__ = [
    "SYSTEM",
    "Actor",
    "DeleteRefused",
    "RowError",
    "StateResolver",
    "UpsertResult",
    "delete_record",
    "state_resolver",
    "upsert_activities",
    "upsert_ceilings",
    "upsert_holdings",
    "upsert_inspections",
    "upsert_notifications",
    "upsert_observation_flights",
    "upsert_quotas",
    "upsert_records",
    "upsert_reductions",
]

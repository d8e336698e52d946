"""The state database, the only package that speaks SQL: see ``database`` for what it keeps."""

from digest.store.database import RUN_SYNC, Store
from digest.store.dialect import is_server, shared_by_hosts
from digest.store.health import Figures
from digest.store.outbox import DeliveryState, KeptReason, NewMessage, OutboxRow, SentRecord
from digest.store.readers import BOUNCE_LIMIT
from digest.store.runs import CHUNK, Claim, RangeRecord, RunProgress, owner_name
from digest.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "BOUNCE_LIMIT",
    "CHUNK",
    "MIGRATIONS",
    "RUN_SYNC",
    "SCHEMA_VERSION",
    "Claim",
    "DeliveryState",
    "Figures",
    "KeptReason",
    "NewMessage",
    "OutboxRow",
    "RangeRecord",
    "RunProgress",
    "SentRecord",
    "Store",
    "is_server",
    "owner_name",
    "shared_by_hosts",
]

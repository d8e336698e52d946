"""The state database (SQLite): see ``database`` for what it keeps."""

from digest.store.base import as_store_error
from digest.store.database import RUN_SYNC, Store
from digest.store.figures import Figures
from digest.store.outbox import BOUNCE_LIMIT, DeliveryState, NewMessage, OutboxRow, SentRecord
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
    "NewMessage",
    "OutboxRow",
    "RangeRecord",
    "RunProgress",
    "SentRecord",
    "Store",
    "as_store_error",
    "owner_name",
]

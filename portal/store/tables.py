"""What the queries of every table share: the database and the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from ground.sql import Cursor, Database
from portal.errors import Code, PortalError
from portal.store.records import utcnow


def one_row(cur: Cursor, sql: str, params: tuple[Any, ...], missing: Code,
            message: str | None = None) -> Any:
    """The row `sql` selects by its key; PortalError(`missing`) when there is none."""
    cur.execute(sql, params)
    row = cur.fetchone()
    if row is None:
        raise PortalError(missing, message)
    return row


class Tables:
    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = utcnow
                 ) -> None:
        self.db = database
        self.clock = clock

    def close(self) -> None:
        self.db.close()

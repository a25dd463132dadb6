"""What the queries of every table share: the database and the clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from ground.sql import Database
from portal.store.records import utcnow


class Tables:
    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = utcnow
                 ) -> None:
        self.db = database
        self.clock = clock

    def close(self) -> None:
        self.db.close()

"""The database underneath every table: the declarative `Base`, the engine (a SQLite file by default,
PostgreSQL by URL), sessions, schema creation, and the lookups shared by tenant-owned tables.

It knows no table: each table module declares its own on `Base`, and the composition root
(`server.py`) names the tables that make up the schema. Synchronous; async callers run it in a
thread (`asyncio.to_thread`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Column, Float, String, Table, and_, create_engine, event, inspect, or_, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from inferstack.db_password import RotatingPassword
from inferstack.errors import ApiError

RETRY_AFTER_OUTAGE_S = 5


class Base(DeclarativeBase):
    pass


class TenantOwned:
    """The columns of a row a tenant owns and lists page by page (files, batches): `owned` and
    `page` rely on them."""

    # A mixin's columns come after the table's own; the key and owner read best first.
    id: Mapped[str] = mapped_column(String(40), primary_key=True, sort_order=-2)
    tenant_id: Mapped[str] = mapped_column(String(40), sort_order=-1)
    created_at: Mapped[float] = mapped_column(Float)


Row = TypeVar("Row", bound=Base)
Owned = TypeVar("Owned", bound=TenantOwned)


def make_engine(url: str, password: RotatingPassword | None = None) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the CLI read while the server writes; foreign keys are off by default in SQLite.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # An unreachable server fails a connection attempt after 5 s, and a connection whose data goes
    # unacknowledged for 10 s (the server vanished mid-statement), rather than after the OS's minutes
    # or hours: callers treat either as an outage (`is_outage`) and retry.
    engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5, "tcp_user_timeout": 10_000})
    if password is not None:

        @event.listens_for(engine, "do_connect")
        def _current_password(dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
            # Every new connection (and every reconnect after pre-ping finds one dead) reads the password
            # that is current now, not the one the process started with.
            return password.connect(lambda **params: dialect.loaded_dbapi.connect(*cargs, **params), cparams)

    return engine


def is_outage(error: BaseException) -> bool:
    """The database did not answer (down, unreachable, restarting, out of connections), as opposed to
    refusing the statement: the same write may succeed later."""
    if isinstance(error, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def database_away() -> ApiError:
    """What a caller gets while the database is away: a 503 to retry, not a 500."""
    return ApiError(503, "The control plane's database is unavailable; retry shortly.", code="database_unavailable",
                    headers={"Retry-After": str(RETRY_AFTER_OUTAGE_S)})


class Database:
    """One database: its engine and its sessions."""

    def __init__(self, url: str, password: RotatingPassword | None = None) -> None:
        self.url = url
        self.engine = make_engine(url, password)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self, tables: Iterable[type[Base]]) -> None:
        """Create the given tables (and their indexes) where they do not exist yet, and add the columns a
        newer version declares to the tables an older one created."""
        declared = [table.__table__ for table in tables]
        Base.metadata.create_all(self.engine, tables=declared)
        with self.engine.begin() as connection:
            add_missing_columns(connection, declared)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session


def add_missing_columns(connection: Connection, tables: Iterable[Table]) -> list[str]:
    """`create_all` creates missing tables only: add each declared column an existing table lacks (the
    schema's one kind of migration so far). Idempotent; returns the `table.column`s it added. A column
    added later must be nullable or have a server default, since the table may hold rows already."""
    existing = inspect(connection)
    added = []
    for table in tables:
        present = {column["name"] for column in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                connection.execute(text(_add_column_sql(connection, table, column)))
                added.append(f"{table.name}.{column.name}")
    return added


def _add_column_sql(connection: Connection, table: Table, column: Column[Any]) -> str:
    dialect = connection.dialect
    if not column.nullable and column.server_default is None:
        raise RuntimeError(f"cannot add {table.name}.{column.name} to an existing table: it is NOT NULL "
                           "without a server default")
    preparer = dialect.identifier_preparer
    # Two control planes may start together on PostgreSQL: the second one's ALTER must not fail.
    guard = "IF NOT EXISTS " if dialect.name == "postgresql" else ""
    sql = (f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {guard}{preparer.format_column(column)} "
           f"{column.type.compile(dialect=dialect)}")
    if column.server_default is not None:
        default = column.server_default.arg  # type: ignore[attr-defined]
        sql += f" DEFAULT '{default}'" if isinstance(default, str) else f" DEFAULT {default.text}"
    return sql if column.nullable else sql + " NOT NULL"


def add(database: Database, row: Row) -> Row:
    """Store a new row."""
    with database.session() as s:
        s.add(row)
    return row


def owned(database: Database, model: type[Owned], tenant_id: str, row_id: str) -> Owned | None:
    """The row if it exists and is the tenant's: another tenant's is indistinguishable from absent."""
    with database.session() as s:
        row = s.get(model, row_id)
        return row if row is not None and row.tenant_id == tenant_id else None


class UnknownCursor(Exception):
    """A page was asked for after a row the tenant does not have."""


def page(database: Database, model: type[Owned], tenant_id: str, after: str | None, limit: int,
         newest_first: bool, *filters: Any) -> tuple[list[Owned], bool]:
    """One page of a tenant's rows ordered by (created_at, id), starting after the row `after`;
    and whether more follow."""
    query = select(model).where(model.tenant_id == tenant_id, *filters)
    order = (model.created_at.desc(), model.id.desc()) if newest_first else (model.created_at, model.id)
    with database.session() as s:
        if after:
            cursor = s.get(model, after)
            if cursor is None or cursor.tenant_id != tenant_id:
                raise UnknownCursor(after)
            if newest_first:
                query = query.where(or_(model.created_at < cursor.created_at,
                                        and_(model.created_at == cursor.created_at, model.id < cursor.id)))
            else:
                query = query.where(or_(model.created_at > cursor.created_at,
                                        and_(model.created_at == cursor.created_at, model.id > cursor.id)))
        rows = list(s.scalars(query.order_by(*order).limit(limit + 1)))
    return rows[:limit], len(rows) > limit

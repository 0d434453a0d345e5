"""Bulk writes for the hot paths (indexing batches, projections).

Django's ``bulk_create`` prepares every value of every row through the field API and
``bulk_update`` builds one ``CASE WHEN`` per row and field; on a batch of 5,000
events that was most of the indexer's time (bench/ingest.py, docs/benchmarks.md).
On PostgreSQL these helpers send the same rows with psycopg2's ``execute_values``:
``INSERT … RETURNING id`` and ``UPDATE … FROM (VALUES …)``. Values are taken from
the model instances as they are (the models' own types: int, str, Decimal, aware
datetime, JSON via ``Json``), so the result is the same rows Django would write.

Large inserts (``COPY_MIN_ROWS`` rows or more) use ``COPY … FROM STDIN`` instead:
PostgreSQL parses no SQL per row and psycopg2 quotes nothing (``mogrify`` of 20k
``ChainEvent`` rows and the server's parse of their ``VALUES`` lists were most of
the indexer's insert time). COPY returns no ids, so the ids are taken from the
table's sequence first (one ``nextval`` query for the batch, ascending, in row
order — the ids an ``INSERT`` would have given) and written explicitly.

On other databases (the embedded SQLite default) they fall back to the ORM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from django.db import connection, models
from psycopg2.extras import Json, execute_values

__all__ = ("COPY_MIN_ROWS", "bulk_insert", "bulk_update", "bulk_upsert", "instance_fast")

# Below this many rows an INSERT … RETURNING (one round trip) beats nextval + COPY (two).
COPY_MIN_ROWS = 64


_DEFAULTS: dict[type, tuple[dict[str, Any], list[models.Field]]] = {}


def instance_fast(model: type[models.Model], values: dict[str, Any]) -> models.Model:
    """A model instance built without ``Model.__init__`` (about ten times cheaper).

    For rows the indexer creates by the thousand. ``values`` are keyed by attname
    (``chain_id``, not ``chain``); fields not given get their defaults (a callable
    default is called per instance, so mutable defaults are never shared).
    """
    cached = _DEFAULTS.get(model)
    if cached is None:
        constant: dict[str, Any] = {}
        callables: list[models.Field] = []
        for field in model._meta.concrete_fields:
            if field.has_default() and callable(field.default):
                callables.append(field)
            else:
                constant[field.attname] = field.get_default() if field.has_default() else None
        cached = _DEFAULTS[model] = (constant, callables)
    constant, callables = cached
    obj = model.__new__(model)
    obj._state = models.base.ModelState()
    data = obj.__dict__
    data.update(constant)
    for field in callables:
        if field.attname not in values:
            data[field.attname] = field.get_default()
    data.update(values)
    return obj


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _concrete_fields(model: type[models.Model]) -> list[models.Field]:
    """Every column to write: all but an auto-increment primary key (a one-to-one
    primary key, e.g. RegistrationFile.agent, is written like any other column)."""
    auto = model._meta.pk if isinstance(model._meta.pk, models.AutoField) else None
    return [f for f in model._meta.concrete_fields if f is not auto]


def _value(field: models.Field, obj: models.Model) -> Any:
    value = getattr(obj, field.attname)
    if isinstance(field, models.JSONField):
        return None if value is None and field.null else Json(value)
    return value


@dataclass(frozen=True)
class _Plan:
    """Per-model precomputation so a row is one C-level ``attrgetter`` call."""

    fields: list[models.Field]
    getter: Any
    json_positions: tuple[int, ...]
    auto_fields: tuple[models.Field, ...]
    relations: tuple[models.Field, ...]
    auto_pk: models.Field | None


_PLANS: dict[type, _Plan] = {}


def _plan(model: type[models.Model]) -> _Plan:
    plan = _PLANS.get(model)
    if plan is None:
        fields = _concrete_fields(model)
        plan = _PLANS[model] = _Plan(
            fields=fields,
            getter=attrgetter(*(f.attname for f in fields)),
            json_positions=tuple(i for i, f in enumerate(fields) if isinstance(f, models.JSONField)),
            auto_fields=tuple(f for f in fields if getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False)),
            relations=tuple(f for f in fields if f.is_relation),
            auto_pk=model._meta.pk if isinstance(model._meta.pk, models.AutoField) else None,
        )
    return plan


def _rows(objs: Sequence[models.Model], plan: _Plan) -> list[tuple]:
    getter = plan.getter
    single = len(plan.fields) == 1  # attrgetter of one name returns the value, not a tuple
    rows = [(getter(obj),) for obj in objs] if single else [getter(obj) for obj in objs]
    if plan.json_positions:
        positions = plan.json_positions
        fixed = []
        for row in rows:
            row = list(row)
            for i in positions:
                if row[i] is not None:
                    row[i] = Json(row[i])
            fixed.append(tuple(row))
        rows = fixed
    return rows


def _prepare(objs: Iterable[models.Model], plan: _Plan) -> None:
    """Fill auto timestamps and FK ids the way ``Model.save`` would."""
    if not plan.auto_fields and not plan.relations:
        return
    for obj in objs:
        for field in plan.auto_fields:
            if getattr(obj, field.attname) is None:
                setattr(obj, field.attname, field.pre_save(obj, add=True))
        for field in plan.relations:
            if getattr(obj, field.attname) is None:
                related = obj._state.fields_cache.get(field.name) if hasattr(obj._state, "fields_cache") else None
                if related is not None and related.pk is not None:
                    setattr(obj, field.attname, related.pk)


# COPY text format: backslash, newline, carriage return and tab are escaped; \\N is NULL.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _copy_text(value: Any) -> str:
    """One value as COPY text: the literal PostgreSQL would parse from the same
    parameter psycopg2 sends for an INSERT (Decimal and int as numerals, aware
    datetimes in ISO 8601 with their offset, booleans as t/f)."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, int | Decimal | float):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).translate(_COPY_ESCAPES)


def _copy_json(value: Any) -> str:
    if value is None:  # SQL NULL, as the INSERT path sends it (not JSON null)
        return "\\N"
    # What psycopg2's Json sends. ensure_ascii output has no raw tab, newline or
    # carriage return (json escapes them), so only backslashes need doubling.
    text = json.dumps(value)
    return text.replace("\\", "\\\\") if "\\" in text else text


_TEXT = "({x} if {x}.isprintable() and '\\\\' not in {x} else {x}.translate(T))"  # most text needs no escape
_FAST: dict[str, str] = {
    # internal type -> "exact class the fast path applies to|expression on {x}"
    "CharField": "str|" + _TEXT,
    "TextField": "str|" + _TEXT,
    "IntegerField": "int|str({x})",
    "BigIntegerField": "int|str({x})",
    "SmallIntegerField": "int|str({x})",
    "PositiveIntegerField": "int|str({x})",
    "PositiveBigIntegerField": "int|str({x})",
    "PositiveSmallIntegerField": "int|str({x})",
    "ForeignKey": "int|str({x})",
    "OneToOneField": "int|str({x})",
    "DecimalField": "Decimal|str({x})",
    "BooleanField": "bool|('t' if {x} else 'f')",
    "DateTimeField": "datetime|{x}.isoformat()",
}


def _line_formatter(plan: _Plan) -> Any:
    """A compiled function: model instance -> one COPY text line (without newline).

    Each column takes a type-specific expression when the value is exactly the
    field's usual Python type, and ``_copy_text`` otherwise (None, or anything
    unusual), so the output is the same as calling ``_copy_text`` on every value —
    about three times faster on 20k-row batches."""
    parts = []
    for i, field in enumerate(plan.fields):
        value = f"v[{i}]" if len(plan.fields) > 1 else "v"
        if i in plan.json_positions:
            parts.append(f"(J({value}) if {value} is not None else N)")
            continue
        fast = _FAST.get(field.get_internal_type())
        if fast is None:
            parts.append(f"C({value})")
            continue
        cls, expression = fast.split("|", 1)
        parts.append(f"({expression.replace('{x}', value)} if {value}.__class__ is {cls} else C({value}))")
    source = "def line(obj):\n    v = getter(obj)\n    return '\\t'.join((" + ", ".join(parts) + ",))\n"
    namespace: dict[str, Any] = {
        "getter": plan.getter,
        "T": _COPY_ESCAPES,
        "C": _copy_text,
        "J": _copy_json,
        "N": "\\N",
        "Decimal": Decimal,
        "datetime": datetime,
    }
    exec(compile(source, f"<copy line {plan.fields[0].model.__name__}>", "exec"), namespace)  # noqa: S102
    return namespace["line"]


_LINES: dict[type, Any] = {}
_COPY_CHUNK = 64 * 1024


class _LineReader:
    """A ``read()``-able view of a generator of COPY lines: rows are formatted while
    they are sent, so a 10k-row batch never exists as one string (a StringIO of it
    held 4 bytes per character: +15 MB of peak RSS at 41k events)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def read(self, size: int = -1) -> str:
        parts, length = [], 0
        for text in self._lines:
            parts.append(text)
            length += len(text)
            if 0 <= size <= length:
                break
        return "".join(parts)


def _copy_insert(objs: Sequence[models.Model], plan: _Plan, table: str) -> None:
    """Write ``objs`` with COPY, ids from the table's sequence (set on the objects)."""
    quote = connection.ops.quote_name
    model = type(objs[0])
    line = _LINES.get(model)
    if line is None:
        line = _LINES[model] = _line_formatter(plan)
    columns = [quote(f.column) for f in plan.fields]
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        ids: list[int] = []
        if plan.auto_pk is not None:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                (table, plan.auto_pk.column, len(objs)),
            )
            ids = sorted(row[0] for row in cursor.fetchall())
            columns.insert(0, quote(plan.auto_pk.column))
        if ids:
            lines = (f"{pk}\t{line(obj)}\n" for pk, obj in zip(ids, objs, strict=True))
        else:
            lines = (f"{line(obj)}\n" for obj in objs)
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"  # names from the model
        cursor.copy_expert(sql, _LineReader(lines), size=_COPY_CHUNK)
    alias = connection.alias
    for position, obj in enumerate(objs):
        if ids:
            obj.pk = ids[position]
        state = obj._state
        state.adding = False
        state.db = alias


def bulk_insert(objs: Sequence[models.Model], *, page_size: int = 1000) -> list[models.Model]:
    """Insert rows and set their primary keys (like ``bulk_create``, faster on PostgreSQL)."""
    if not objs:
        return list(objs)
    model = type(objs[0])
    if not _is_postgres():
        return model.objects.bulk_create(objs, batch_size=page_size)
    plan = _plan(model)
    _prepare(objs, plan)
    if len(objs) >= COPY_MIN_ROWS:
        _copy_insert(objs, plan, model._meta.db_table)
        return list(objs)
    fields = plan.fields
    table = model._meta.db_table
    pk = model._meta.pk.column
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    sql = f"INSERT INTO {table} ({columns}) VALUES %s RETURNING {pk}"  # noqa: S608 - names from the model
    rows = _rows(objs, plan)
    with connection.cursor() as cursor:
        ids = execute_values(cursor.cursor, sql, rows, page_size=page_size, fetch=True)
    for obj, (pk_value,) in zip(objs, ids, strict=True):
        obj.pk = pk_value
        obj._state.adding = False
        obj._state.db = connection.alias
    return list(objs)


def bulk_update(objs: Sequence[models.Model], fields: Sequence[str], *, page_size: int = 1000) -> None:
    """Write ``fields`` of existing rows by primary key (like ``bulk_update``)."""
    if not objs:
        return
    model = type(objs[0])
    if not _is_postgres():
        model.objects.bulk_update(objs, fields, batch_size=page_size)
        return
    meta = model._meta
    chosen = [meta.get_field(name) for name in fields]
    for field in chosen:
        if getattr(field, "auto_now", False):
            for obj in objs:
                setattr(obj, field.attname, field.pre_save(obj, add=False))
    table = meta.db_table
    pk = meta.pk
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in chosen)
    names = ", ".join([quote(pk.column), *(quote(f.column) for f in chosen)])
    # The first row carries explicit casts so PostgreSQL types NULLs and literals right.
    casts = [pk.db_type(connection), *(f.db_type(connection) for f in chosen)]
    template = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    sql = (
        f"UPDATE {table} AS t SET {assignments} FROM (VALUES %s) AS v({names}) "  # noqa: S608 - names from the model
        f"WHERE t.{quote(pk.column)} = v.{quote(pk.column)}"
    )
    rows = [(obj.pk, *(_value(f, obj) for f in chosen)) for obj in objs]
    with connection.cursor() as cursor:
        execute_values(cursor.cursor, sql, rows, template=template, page_size=page_size)


def bulk_upsert(
    objs: Sequence[models.Model], *, unique_fields: Sequence[str], update_fields: Sequence[str], page_size: int = 1000
) -> None:
    """Insert rows, or update ``update_fields`` of the row with the same unique key
    (``bulk_create(update_conflicts=True)``, without Django's per-value preparation).
    Primary keys are not set on the objects."""
    if not objs:
        return
    model = type(objs[0])
    if not _is_postgres():
        model.objects.bulk_create(
            objs,
            batch_size=page_size,
            update_conflicts=True,
            unique_fields=unique_fields,
            update_fields=update_fields,
        )
        return
    plan = _plan(model)
    _prepare(objs, plan)
    meta = model._meta
    fields = plan.fields
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    conflict = ", ".join(quote(meta.get_field(name).column) for name in unique_fields)
    updates = ", ".join(
        f"{quote(meta.get_field(name).column)} = EXCLUDED.{quote(meta.get_field(name).column)}"
        for name in update_fields
    )
    sql = (
        f"INSERT INTO {meta.db_table} ({columns}) VALUES %s "  # noqa: S608 - names from the model
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    )
    rows = _rows(objs, plan)
    with connection.cursor() as cursor:
        execute_values(cursor.cursor, sql, rows, page_size=page_size)

"""Importers: public data sets converted to streamrec events, in time order, with drops counted.

Formats:

``online-retail``
    The UCI Online Retail invoice lines (CSV, optionally gzip). Each customer's purchase line
    becomes a ``purchase`` event: user = CustomerID, item = StockCode (upper-case), ts =
    InvoiceDate read as UTC, value = Quantity, title = Description, event_id =
    ``"{InvoiceNo}:{position of the line within its invoice}"`` (counted over all lines of the
    file, so it does not change with the drop rules or a time window). Dropped, each counted:

    - lines without CustomerID: there is no user to learn about;
    - cancellations (InvoiceNo "C...", negative Quantity) and other non-positive quantities: the
      protocol learns from positive feedback only. A return is not a new interest, and reading it
      as a negative signal would need the purchase it undoes, which the data do not link;
    - StockCodes that are not products (POST, DOT, M, D, C2, BANK CHARGES, AMAZONFEE, CRUK,
      PADS, S, B, DCGS..., gift_0001_...): product codes are five digits with an optional letter
      suffix (85123A, 84997d, 15056BL); everything else is postage, fees, manual adjustments,
      vouchers or samples, which nobody should be recommended;
    - lines without a positive UnitPrice: free lines are corrections and give-aways, not choices.

``otto``
    OTTO session JSON Lines (``{"session", "events": [{"aid", "ts", "type"}]}``): user = session,
    item = aid, ts in epoch ms, clicks/carts/orders become click/cart/purchase, event_id =
    ``"{session}:{index within the session}"``.

``tsv``
    MovieLens-style ``user<TAB>item<TAB>rating<TAB>timestamp`` lines (timestamp in epoch
    seconds) become ``rating`` events with value = rating and event_id =
    ``"{user}:{item}:{timestamp}"``.

Every written line parses with :func:`operators.events.parse_event`. The output is stably sorted
by ts, so events with one timestamp keep their source order.

>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "ratings.tsv").write_text("1\\t50\\t5\\t881250949\\n2\\t50\\tfive\\t881250950\\n")
>>> count = import_dataset("tsv", folder / "ratings.tsv", folder / "events.jsonl")
>>> count.written, count.summary()
(1, 'kept 1; dropped 1: 1 lines that are not user, item, rating, timestamp')
>>> (folder / "events.jsonl").read_bytes()
b'{"user_id":"1","item_id":"50","ts":881250949000,"type":"rating","value":5.0,"event_id":"1:50:881250949"}\\n'
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson

from operators import jsonl
from operators.events import Event, Rejected, event_from_record


class DatasetError(ValueError):
    """The source file is not in the format asked for (one readable line)."""


@dataclass
class ImportCount:
    """How many events were written and how many source records were dropped, by reason."""

    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def summary(self) -> str:
        """A readable breakdown, e.g. ``kept 10; dropped 3: 2 without CustomerID, 1 ...``."""
        if not self.dropped:
            return f"kept {self.written:,}; dropped none"
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in self.dropped.most_common())
        return f"kept {self.written:,}; dropped {self.dropped.total():,}: {reasons}"


#: A format's reader: yields the source's valid events in source order, counting what it drops.
Reader = Callable[[Path, ImportCount], Iterator[Event]]


def _checked(record: dict[str, Any], count: ImportCount) -> Event | None:
    """The record as a validated event, or None (counted) when it is not one."""
    event = event_from_record(record)
    if isinstance(event, Rejected):
        count.drop(f"invalid events ({event.reason})")
        return None
    return event


def _text_lines(path: Path) -> io.TextIOWrapper:
    # errors="replace": other copies of Online Retail are Latin-1; a mangled character in a
    # title is better than refusing the whole file.
    return io.TextIOWrapper(jsonl.open_bytes(path), encoding="utf-8", errors="replace", newline="")


# Product codes: five digits, optionally a letter suffix (85123A, 15056BL; some in lower case).
_PRODUCT_CODE = re.compile(r"\d{5}[A-Z]*")
_RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
)


def _invoice_time(text: str) -> int:
    """Epoch ms of an InvoiceDate: ``2010-12-01 08:26:00`` (this copy) or ``12/1/2010 8:26``."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = datetime.strptime(text, "%m/%d/%Y %H:%M")
    return round(moment.replace(tzinfo=UTC).timestamp() * 1000)


def _online_retail(src: Path, count: ImportCount) -> Iterator[Event]:
    with _text_lines(src) as stream:
        rows = csv.reader(stream)
        header = next(rows, [])
        missing = [name for name in _RETAIL_COLUMNS if name not in header]
        if missing:
            raise DatasetError(f"{src} is not Online Retail CSV: no column {', '.join(missing)}")
        invoice_col, code_col, title_col, quantity_col, date_col, price_col, customer_col = (
            header.index(name) for name in _RETAIL_COLUMNS
        )
        lines_seen: Counter[str] = Counter()
        times: dict[str, int] = {}  # all lines of an invoice share one date string
        for row in rows:
            invoice = row[invoice_col].strip()
            position = lines_seen[invoice]
            lines_seen[invoice] += 1
            code = row[code_col].strip().upper()
            customer = row[customer_col].strip()
            if not customer:
                count.drop("without CustomerID")
                continue
            if invoice.startswith("C"):
                count.drop("cancellations")
                continue
            if not _PRODUCT_CODE.fullmatch(code):
                count.drop("non-product StockCodes")
                continue
            date = row[date_col].strip()
            try:
                quantity = int(float(row[quantity_col]))
                price = float(row[price_col])
                user = str(int(float(customer)))
                if date not in times:
                    times[date] = _invoice_time(date)
            except ValueError:
                count.drop("unreadable lines")
                continue
            if quantity <= 0:
                count.drop("with Quantity <= 0")
                continue
            if price <= 0:
                count.drop("with UnitPrice <= 0")
                continue
            record = {
                "user_id": user,
                "item_id": code,
                "ts": times[date],
                "type": "purchase",
                "value": quantity,
                "event_id": f"{invoice}:{position}",
                "title": row[title_col].strip() or None,
            }
            if (event := _checked(record, count)) is not None:
                yield event


_OTTO_TYPES = {"clicks": "click", "carts": "cart", "orders": "purchase"}


def _otto(src: Path, count: ImportCount) -> Iterator[Event]:
    for line in jsonl.numbered_lines(src):
        try:
            session = orjson.loads(line.raw)
            user = str(session["session"])
            events = list(session["events"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            count.drop("unreadable session lines")
            continue
        for index, event in enumerate(events):
            try:
                record = {
                    "user_id": user,
                    "item_id": str(event["aid"]),
                    "ts": event["ts"],
                    "type": _OTTO_TYPES[event["type"]],
                    "event_id": f"{user}:{index}",
                }
            except (KeyError, TypeError):
                count.drop("events without aid, ts or a known type")
                continue
            if (event := _checked(record, count)) is not None:
                yield event


def _tsv(src: Path, count: ImportCount) -> Iterator[Event]:
    for line in jsonl.numbered_lines(src):
        fields = line.raw.decode("utf-8", errors="replace").split("\t")
        try:
            user, item, rating, seconds = (text.strip() for text in fields[:4])
            record = {
                "user_id": user,
                "item_id": item,
                "ts": int(seconds) * 1000,
                "type": "rating",
                "value": float(rating),
                "event_id": f"{user}:{item}:{seconds}",
            }
        except ValueError:
            count.drop("lines that are not user, item, rating, timestamp")
            continue
        if (event := _checked(record, count)) is not None:
            yield event


READERS: dict[str, Reader] = {"online-retail": _online_retail, "otto": _otto, "tsv": _tsv}


def import_dataset(
    fmt: str,
    src: Path,
    out: Path,
    since: int | None = None,
    until: int | None = None,
    track: Callable[[Iterable[Event]], Iterable[Event]] = iter,
) -> ImportCount:
    """Convert ``src`` in format ``fmt`` to events in ``out`` (JSON Lines, ``.gz`` compresses).

    ``since``/``until`` (epoch ms, inclusive/exclusive) keep one time window of the stream;
    ``track`` sees the events as they are read (a progress bar).
    """
    if fmt not in READERS:
        raise DatasetError(f"unknown format {fmt!r} (known: {', '.join(READERS)})")
    count = ImportCount()
    # Events, not their JSON: orjson's bytes keep a ~4 KB buffer each while they live.
    kept: list[Event] = []
    for event in track(READERS[fmt](Path(src), count)):
        if (since is not None and event.ts < since) or (until is not None and event.ts >= until):
            count.drop("outside the time window")
        else:
            kept.append(event)
    kept.sort(key=attrgetter("ts"))
    count.written = jsonl.write_jsonl(out, (event.to_json() for event in kept))
    return count

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from operators import importers, jsonl
from operators.events import Event, parse_event, parse_timestamp

RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
RETAIL_ROWS = [
    # A later invoice first: the output must come out in time order anyway.
    "536370,22728,ALARM CLOCK BAKELIKE PINK,24,2010-12-01 08:45:00,3.75,12583.0,France",
    "536365,85123a,WHITE HANGING HEART T-LIGHT HOLDER  ,6,2010-12-01 08:26:00,2.55,17850.0,UK",
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,UK",
    "536365,POST,POSTAGE,1,2010-12-01 08:26:00,18.00,17850.0,UK",
    "536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,,UK",
    "C536379,D,Discount,-1,2010-12-01 09:41:00,27.50,14527.0,UK",
    "C536383,35004C,SET OF 3 COLOURED  FLYING DUCKS,-1,2010-12-01 09:49:00,4.65,15311.0,UK",
    "536414,22139,,56,2010-12-01 11:52:00,0.00,,UK",
    "536981,M,Manual,2,2010-12-03 14:26:00,0.85,14723.0,UK",
    "537197,22841,ROUND CAKE TIN VINTAGE GREEN,1,2010-12-05 14:02:00,0.00,12647.0,Germany",
    "537198,gift_0001_20,Dotcomgiftshop Gift Voucher,1,2010-12-05 14:05:00,17.02,12647.0,UK",
    "537199,15056BL,EDWARDIAN PARASOL BLACK,12,2010-12-05 14:10:00,4.95,12647.0,UK",
    "537200,22086,PAPER CHAIN KIT,not-a-number,2010-12-05 15:00:00,2.55,12647.0,UK",
    "536365,84406B,CREAM CUPID HEARTS COAT HANGER,8,2010-12-01 08:26:00,2.75,17850.0,UK",
]


def write_retail(path: Path, rows: list[str] = RETAIL_ROWS) -> Path:
    text = "\r\n".join([RETAIL_HEADER, *rows]) + "\r\n"
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return path


def read_events(path: Path) -> list[Event]:
    events = []
    for raw in jsonl.read_lines(path):
        event = parse_event(raw)
        assert isinstance(event, Event), (raw, event)
        events.append(event)
    return events


def test_online_retail_keeps_customer_purchases_and_counts_each_drop(tmp_path: Path) -> None:
    src = write_retail(tmp_path / "retail.csv.gz")
    count = importers.import_dataset("online-retail", src, tmp_path / "out.jsonl")
    assert count.written == 5
    assert count.dropped == {
        "without CustomerID": 2,
        "cancellations": 2,
        "non-product StockCodes": 3,
        "with UnitPrice <= 0": 1,
        "unreadable lines": 1,
    }
    assert count.summary() == (
        "kept 5; dropped 9: 3 non-product StockCodes, 2 without CustomerID, 2 cancellations, "
        "1 with UnitPrice <= 0, 1 unreadable lines"
    )
    events = read_events(tmp_path / "out.jsonl")
    assert [(e.user_id, e.item_id, e.event_id) for e in events] == [
        ("17850", "85123A", "536365:0"),
        ("17850", "71053", "536365:1"),
        ("17850", "84406B", "536365:3"),
        ("12583", "22728", "536370:0"),
        ("12647", "15056BL", "537199:0"),
    ]
    first = events[0]
    assert first.ts == parse_timestamp("2010-12-01T08:26:00Z")
    assert (first.type, first.value, first.title) == (
        "purchase",
        6,
        "WHITE HANGING HEART T-LIGHT HOLDER",
    )


def test_online_retail_reads_the_uci_date_format_and_integer_customers(tmp_path: Path) -> None:
    src = write_retail(
        tmp_path / "retail.csv",
        ["536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom"],
    )
    importers.import_dataset("online-retail", src, tmp_path / "out.jsonl")
    (event,) = read_events(tmp_path / "out.jsonl")
    assert (event.user_id, event.ts) == ("17850", parse_timestamp("2010-12-01T08:26:00"))


def test_event_ids_do_not_depend_on_the_time_window(tmp_path: Path) -> None:
    src = write_retail(tmp_path / "retail.csv.gz")
    since = parse_timestamp("2010-12-01T08:30:00")
    until = parse_timestamp("2010-12-05T00:00:00")
    count = importers.import_dataset("online-retail", src, tmp_path / "w.jsonl", since, until)
    assert count.written == 1
    assert count.dropped["outside the time window"] == 4
    (event,) = read_events(tmp_path / "w.jsonl")
    assert event.event_id == "536370:0"


def test_import_is_stable_and_gzip_output_round_trips(tmp_path: Path) -> None:
    src = write_retail(tmp_path / "retail.csv.gz")
    importers.import_dataset("online-retail", src, tmp_path / "a.jsonl.gz")
    importers.import_dataset("online-retail", src, tmp_path / "b.jsonl")
    assert read_events(tmp_path / "a.jsonl.gz") == read_events(tmp_path / "b.jsonl")
    timestamps = [e.ts for e in read_events(tmp_path / "b.jsonl")]
    assert timestamps == sorted(timestamps)


def test_online_retail_without_its_columns_is_a_readable_error(tmp_path: Path) -> None:
    src = tmp_path / "other.csv"
    src.write_text("a,b\n1,2\n")
    with pytest.raises(importers.DatasetError, match="no column InvoiceNo, StockCode"):
        importers.import_dataset("online-retail", src, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_otto_sessions_become_typed_events_in_time_order(tmp_path: Path) -> None:
    sessions = [
        {
            "session": 7,
            "events": [
                {"aid": 11, "ts": 1659304800025, "type": "clicks"},
                {"aid": 11, "ts": 1659304900000, "type": "carts"},
                {"aid": 11, "ts": 1659305000000, "type": "orders"},
                {"aid": 12, "ts": 1659305100000, "type": "hovers"},
            ],
        },
        {"session": 8, "events": [{"aid": 5, "ts": 1659304850000, "type": "clicks"}]},
    ]
    src = tmp_path / "train.jsonl"
    lines = [orjson.dumps(session) for session in sessions]
    jsonl.write_jsonl(src, [lines[0], b"{truncated", lines[1]])
    count = importers.import_dataset("otto", src, tmp_path / "out.jsonl")
    assert count.written == 4
    assert count.dropped == {
        "unreadable session lines": 1,
        "events without aid, ts or a known type": 1,
    }
    events = read_events(tmp_path / "out.jsonl")
    assert [(e.user_id, e.item_id, e.type, e.event_id) for e in events] == [
        ("7", "11", "click", "7:0"),
        ("8", "5", "click", "8:0"),
        ("7", "11", "cart", "7:1"),
        ("7", "11", "purchase", "7:2"),
    ]
    assert events[0].ts == 1659304800025


def test_tsv_ratings_with_second_timestamps(tmp_path: Path) -> None:
    src = tmp_path / "u.data"
    src.write_text(
        "196\t242\t3\t881250949\n"
        "\n"
        "186\t302\t4.5\t891717742\n"
        "user\titem\trating\ttimestamp\n"
        "22\t377\t1\n"
        "\t377\t1\t881250949\n"
        "244\t51\t2\t1\n"
    )
    count = importers.import_dataset("tsv", src, tmp_path / "out.jsonl")
    assert count.written == 2
    assert count.dropped["lines that are not user, item, rating, timestamp"] == 2
    # An empty user and a 1970 timestamp are rejected by the event schema itself.
    assert sum(n for reason, n in count.dropped.items() if reason.startswith("invalid")) == 2
    events = read_events(tmp_path / "out.jsonl")
    assert [(e.user_id, e.item_id, e.type, e.value, e.ts) for e in events] == [
        ("196", "242", "rating", 3.0, 881250949000),
        ("186", "302", "rating", 4.5, 891717742000),
    ]
    assert events[0].event_id == "196:242:881250949"


def test_unknown_format_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(importers.DatasetError, match="known: online-retail, otto, tsv"):
        importers.import_dataset("parquet", tmp_path / "x", tmp_path / "y")


def test_bundled_sample_is_a_small_valid_time_ordered_stream() -> None:
    sample = Path(__file__).parent.parent / "dataflows" / "data" / "online_retail_sample.jsonl.gz"
    assert sample.stat().st_size < 2_000_000
    events = read_events(sample)
    assert len(events) == 47_193
    assert all(event.type == "purchase" and event.title for event in events)
    assert [event.ts for event in events] == sorted(event.ts for event in events)
    assert len({event.event_id for event in events}) == len(events)

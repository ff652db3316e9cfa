"""Two local processes (``streamrec run -i 0/1 -a ...``) do the work of one.

The throughput and HR@10 comparison on the full Online Retail stream is
``streamrec bench``; here a slice of the bundled sample checks that a
two-process cluster handles every event once: the same windows are served, one list per
(user, version) exactly once with the same event time, and the dead letters are the same.
"""

from __future__ import annotations

import gzip
from itertools import islice
from pathlib import Path

import orjson
from kafka_job import ROOT, run_cluster, write_file_config

SAMPLE = ROOT / "dataflows" / "data" / "online_retail_sample.jsonl.gz"
EVENTS = 3_000
TIMEOUT_S = 300.0


def _run(tmp_path: Path, events: Path, processes: int) -> tuple[list[dict], list[dict]]:
    directory = tmp_path / f"{processes}-processes"
    directory.mkdir()
    out, dead = directory / "recs.jsonl", directory / "dead.jsonl"
    config = write_file_config(directory / "config.yaml", events, out, dead)
    run_cluster(config, processes, 1, directory, TIMEOUT_S)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    return lines, letters


def test_two_processes_serve_the_windows_of_one_process(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with gzip.open(SAMPLE, "rb") as sample:
        lines = list(islice(sample, EVENTS))
    # One malformed line in the middle: dead-lettered by whichever process reads it.
    lines.insert(EVENTS // 2, b'{"user_id": "x", "ts": 1}\n')
    events.write_bytes(b"".join(lines))

    single, single_dead = _run(tmp_path, events, 1)
    pair, pair_dead = _run(tmp_path, events, 2)

    def keyed(lists: list[dict]) -> dict[tuple[str, int], int]:
        keys = {(value["user_id"], value["version"]): value["as_of"] for value in lists}
        assert len(keys) == len(lists), "a (user, version) list was emitted twice"
        return keys

    # A user's windows depend on their own events only, whichever process holds them.
    assert 0 < len(single) < EVENTS
    assert keyed(pair) == keyed(single)
    assert all(len(value["items"]) <= 10 for value in pair)
    assert pair_dead == single_dead
    assert [letter["line"] for letter in pair_dead] == [EVENTS // 2 + 1]

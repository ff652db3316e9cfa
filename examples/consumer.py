"""A minimal consumer of streamrec's lists: the newest list per user, kept in memory.

It needs only ``confluent-kafka``. Copy it into your service and replace ``print`` with your
store. The three rules of the output topic (key = user id, value = the list as JSON):

1. keep a list only if its ``version`` is above the one held for that user: delivery is
   at-least-once, so after a restart of the job lists come again with versions already seen;
2. a null value (a tombstone) means the user was forgotten or their state expired: delete what
   you hold;
3. after a tombstone the user's versions start again at 1.

    python examples/consumer.py localhost:9092 streamrec.recommendations my-service
"""

from __future__ import annotations

import json
import sys

from confluent_kafka import Consumer


def apply(latest: dict[str, dict], key: bytes, value: bytes | None) -> bool:
    """Apply one message to ``latest`` (user id -> newest list); False for a repeat."""
    user_id = key.decode()
    if value is None:
        return latest.pop(user_id, None) is not None
    record = json.loads(value)
    held = latest.get(user_id)
    if held is not None and held["version"] >= record["version"]:
        return False
    latest[user_id] = record
    return True


def run(consumer: Consumer, latest: dict[str, dict], idle_polls: int | None = None) -> None:
    """Poll and apply messages; stop after ``idle_polls`` empty polls in a row with partitions
    assigned (None: never; joining the group takes a few seconds)."""
    idle = 0
    while idle_polls is None or idle < idle_polls:
        message = consumer.poll(1.0)
        if message is None:
            idle += bool(consumer.assignment())
            continue
        idle = 0
        if message.error() is not None:
            print(f"consumer error: {message.error()}", file=sys.stderr)
            continue
        if apply(latest, message.key(), message.value()):
            user_id = message.key().decode()
            print(user_id, latest.get(user_id, "no list"))


def main(brokers: str, topic: str, group: str) -> None:
    consumer = Consumer(
        {"bootstrap.servers": brokers, "group.id": group, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    try:
        run(consumer, {})
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])

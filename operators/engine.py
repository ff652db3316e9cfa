"""The sequential engine: the dataflow's steps composed in one process, in its order.

``Engine.learn(event)`` does what the dataflow does with one worker: the user's gate admits the
event, the user step records it and sends its messages to the one model replica, which learns
test-then-train and serves the user's new list when a window closes. Because the very same
classes run here and in ``dataflows/recommend.py``, evaluating the engine measures the job.

>>> from operators.events import Event
>>> engine = Engine(EngineConfig(k=3, dimensions=4))
>>> for user, item, minute in [("ann", "tea", 0), ("ann", "jam", 1), ("bob", "tea", 2),
...                            ("cat", "tea", 3), ("cat", "jam", 4), ("bob", "cup", 5)]:
...     engine.learn(Event(user, item, 1_700_000_000_000 + minute * 60_000, "purchase"))
>>> engine.recommend("bob", 1)
['jam']
>>> engine.latest("bob").version, engine.recommend("dan", 3)
(2, [])
>>> engine.learn(Event("bob", None, 1_700_000_400_000, "forget_user"))
>>> engine.latest("bob") is None
True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from operators.engine_config import EngineConfig
from operators.events import Event
from operators.messages import ForgetUser, Recommendation, ReplicaMessage, Serve
from operators.replica import ModelReplica
from operators.user_state import UserState
from operators.warm_start import WarmStart
from operators.windows import Dropped, Forget, GateSettings, Learn, UserGate


class Engine:
    """The streamrec recommender as one object (the evaluation protocol's ``OnlineRecommender``).

    With ``gate`` settings, events pass the same per-user gate as in the dataflow
    (de-duplication, lateness, windows); without, every event is its own window: learned,
    trained on and served at once. ``warm`` starts from a pretrained state
    (:mod:`operators.warm_start`). ``freeze()`` stops all learning from then on: the item model
    and the ranker no longer change; users' histories (the serving context) still grow.
    """

    name = "streamrec"

    def __init__(
        self,
        config: EngineConfig | None = None,
        gate: GateSettings | None = None,
        warm: WarmStart | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.name = self.config.model_name
        self.gate = gate
        self.gates: dict[str, UserGate] = {}
        self.users: dict[str, UserState] = {}
        self.replica = ModelReplica(self.config)
        if warm is not None:
            self.replica = warm.replica(self.config)
            self.users = warm.users()
        #: Pretrained users not served a list yet (see :meth:`catch_up`).
        self._unserved_warm = set(self.users)
        #: Per user: the latest list and the item rows it was chosen from.
        self.served: dict[str, tuple[Recommendation, np.ndarray]] = {}

    def freeze(self) -> None:
        """Stop all learning (item knowledge and ranker) from now on."""
        self.replica.learning = False

    def learn(self, event: Event) -> None:
        if self.gate is None:
            if event.is_forget:
                self._forget(event)
            else:
                self._learn(Learn(event))
            return
        gate = self.gates.setdefault(event.user_id, UserGate())
        for output in gate.offer(event, self.gate):
            if isinstance(output, Learn):
                self._learn(output)
            elif isinstance(output, Forget):
                self._forget(output.event)
            elif not isinstance(output, Dropped):
                self._serve(event.user_id)
        if gate.is_empty:
            del self.gates[event.user_id]

    def catch_up(self, user_id: str, ts: int) -> None:
        """Close the user's window if it ended by ``ts``, so the user's list is the one the
        dataflow holds for them at ``ts`` (called by the evaluator before asking for a list).
        A pretrained user gets the list their pretrained history gives before their first event,
        as a job started from the warm start holds the lists of the pretrain on its topic."""
        if user_id in self._unserved_warm:
            self._unserved_warm.discard(user_id)
            if user_id not in self.served and user_id in self.users:
                self._serve(user_id)
        gate = self.gates.get(user_id)
        if gate is not None and self.gate is not None and self.gate.length_ms:
            for _ in gate.close_before(ts, self.gate):
                self._serve(user_id)

    def on_idle(self, user_id: str) -> None:
        """Serve the user a fresh list now, as the live job's timers do while the user is idle:
        their open window closes, or their list is refreshed."""
        self._unserved_warm.discard(user_id)
        gate = self.gates.get(user_id)
        if gate is not None:
            gate.flush()
        if user_id in self.users:
            self._serve(user_id)

    def expire(self, user_id: str) -> None:
        """Drop everything of the user, as the live job does once their state expires (its
        tombstone leaves them no list; their next event starts them afresh)."""
        self.gates.pop(user_id, None)
        self._drop(user_id, 0)

    def flush(self) -> None:
        """Close every open window (end of input)."""
        for user_id, gate in self.gates.items():
            for _ in gate.flush():
                self._serve(user_id)

    def recommend(self, user_id: str, k: int) -> list[str]:
        """The first ``k`` items of the list served after the user's latest window."""
        served = self.served.get(user_id)
        return [] if served is None else [item for item, _, _ in served[0].items[:k]]

    def latest(self, user_id: str) -> Recommendation | None:
        served = self.served.get(user_id)
        return None if served is None else served[0]

    def candidate_items(self, user_id: str) -> list[str]:
        """The candidates the user's latest list was chosen from (empty before any list)."""
        served = self.served.get(user_id)
        if served is None:
            return []
        ids = self.replica.items.ids
        return [item for row in served[1].tolist() if (item := ids[row]) is not None]

    def save(self, directory: Path) -> None:
        """Write the whole state (item model, ranker, users) as a warm start."""
        WarmStart.write(directory, self.replica, self.users)

    def _learn(self, learn: Learn) -> None:
        user_id = learn.event.user_id
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserState(user_id)
        messages = user.on_event(learn.event, self.config, train=learn.train, serve=learn.serve)
        for message in messages:
            self._send(message)

    def _serve(self, user_id: str) -> None:
        self._send(self.users[user_id].serve(self.config))

    def _send(self, message: ReplicaMessage) -> None:
        if isinstance(message, Serve):
            recommendation, candidates = self.replica.serve(message)
            self.served[message.user_id] = (recommendation, candidates.rows.astype(np.int32))
        else:
            self.replica.on_message(message)

    def _forget(self, event: Event) -> None:
        self._drop(event.user_id, event.ts)

    def _drop(self, user_id: str, as_of: int) -> None:
        self._unserved_warm.discard(user_id)
        self.users.pop(user_id, None)
        self.replica.on_message(ForgetUser(user_id, as_of))
        self.served.pop(user_id, None)

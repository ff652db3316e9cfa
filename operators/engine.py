"""The sequential engine: the dataflow's keyed steps composed in one process, in its order.

``Engine.learn(event)`` does what the dataflow does with one worker: the user step records the
event and scatters; each item message goes to its item's state (which replies before it
updates), the trend message to the trend state, and the header with all replies to the user's
rank shard, which learns test-then-train and serves the user's new list. Because the very same
step classes run here and in ``dataflows/recommend.py``, evaluating the engine measures the job.

>>> from operators.events import Event
>>> engine = Engine(EngineConfig(k=3))
>>> for user, item, minute in [("ann", "tea", 0), ("ann", "jam", 1), ("bob", "tea", 2),
...                            ("cat", "tea", 3), ("cat", "jam", 4), ("bob", "cup", 5)]:
...     engine.learn(Event(user, item, 1_700_000_000_000 + minute * 60_000, "purchase"))
>>> engine.recommend("bob", 3)
['jam']
>>> engine.latest("bob").version, engine.recommend("dan", 3)
(2, [])
>>> engine.learn(Event("bob", None, 1_700_000_400_000, "forget_user"))
>>> engine.latest("bob") is None
True
"""

from __future__ import annotations

from operators.engine_config import EngineConfig
from operators.events import Event
from operators.item_state import ItemState
from operators.messages import RankPart, Recommendation
from operators.ranking import Ranked, RankState
from operators.trend import TrendState
from operators.user_state import UserState, UserStep, forget_user
from operators.windows import Forget, GateSettings, Learn, Serve, UserGate


class Engine:
    """The streamrec recommender as one object (the evaluation protocol's ``OnlineRecommender``).

    With ``gate`` settings, events pass the same per-user gate as in the dataflow
    (de-duplication, lateness, windows); without, every event is its own window: learned,
    trained on and served in one request.
    ``freeze()`` stops all learning from then on: item and trend states still answer but no
    longer update, the rankers no longer train; users' histories (the serving context) still
    grow, so a frozen engine keeps serving with a model that stopped learning.
    """

    name = "streamrec"

    def __init__(self, config: EngineConfig | None = None, gate: GateSettings | None = None):
        self.config = config or EngineConfig()
        self.name = self.config.model_name
        self.gate = gate
        self.gates: dict[str, UserGate] = {}
        self.users: dict[str, UserState] = {}
        self.items: dict[str, ItemState] = {}
        self.trend = TrendState()
        self.shards = [RankState(self.config) for _ in range(self.config.shards)]
        self.ranked: dict[str, Ranked] = {}
        self.learning = True

    def freeze(self) -> None:
        """Stop all learning (item links, popularity, trend, rankers) from now on."""
        self.learning = False

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
            elif isinstance(output, Serve):
                self._serve(event.user_id)
            elif isinstance(output, Forget):
                self._forget(output.event)
        if gate.is_empty:
            del self.gates[event.user_id]

    def catch_up(self, user_id: str, ts: int) -> None:
        """Close the user's window if it ended by ``ts``, so the user's list is the one the
        dataflow holds for them at ``ts`` (called by the evaluator before asking for a list)."""
        gate = self.gates.get(user_id)
        if gate is not None and self.gate is not None and self.gate.length_ms:
            for _ in gate.close_before(ts, self.gate):
                self._serve(user_id)

    def flush(self) -> None:
        """Close every open window (end of input)."""
        for user_id, gate in self.gates.items():
            for _ in gate.flush():
                self._serve(user_id)

    def recommend(self, user_id: str, k: int) -> list[str]:
        """The first ``k`` items of the list served after the user's latest window."""
        ranked = self.ranked.get(user_id)
        return [] if ranked is None else [item for item, _ in ranked.recommendation.items[:k]]

    def latest(self, user_id: str) -> Recommendation | None:
        ranked = self.ranked.get(user_id)
        return None if ranked is None else ranked.recommendation

    def candidate_items(self, user_id: str) -> list[str]:
        """The candidates the user's latest list was chosen from (empty before any event)."""
        ranked = self.ranked.get(user_id)
        return [] if ranked is None else ranked.candidate_items()

    def _learn(self, learn: Learn) -> None:
        user_id = learn.event.user_id
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserState(user_id)
        self._scatter(user.on_event(learn.event, self.config, train=learn.train, serve=learn.serve))

    def _serve(self, user_id: str) -> None:
        self._scatter(self.users[user_id].serve(self.config))

    def _scatter(self, step: UserStep) -> None:
        config = self.config
        items = self.items
        learning = self.learning
        # Reply, then update (unless frozen): exactly ItemState/TrendState.on_message.
        parts: list[RankPart] = []
        asked = step.header is not None
        for message in step.items:
            item = items.get(message.item_id)
            if item is None:
                item = items[message.item_id] = ItemState()
            if asked:
                parts.append(item.reply(message, config))
            if learning:
                item.apply(message, config)
        if asked:
            parts.append(self.trend.reply(step.trend))
        if learning:
            self.trend.apply(step.trend, config)
        header = step.header
        if header is not None:
            ranked = self.shards[header.shard].rank(header, parts, config, learning)
            if ranked is not None:
                self.ranked[header.request[0]] = ranked

    def _forget(self, event: Event) -> None:
        message = forget_user(event, self.config)
        self.users.pop(event.user_id, None)
        self.shards[message.shard].on_message(message, self.config)
        self.ranked.pop(event.user_id, None)

"""Warm starts: the state learned from a recorded history, saved to start a job from.

``streamrec pretrain HISTORY --out DIR`` runs the engine over a history and writes its state
here: the item model, the ranker and the open windows' training lists (``model.pickle``), the
users (``users.pickle``) and a ``meta.json`` saying what it holds. ``--warm-start DIR`` on
``evaluate``, ``replay`` and ``run`` starts from that state and keeps learning online. The
pickles are as trusted as the recovery store: load only directories you wrote.

>>> import tempfile
>>> from operators.engine_config import EngineConfig
>>> from operators.item_model import Observation
>>> config = EngineConfig(dimensions=4)
>>> replica = ModelReplica(config)
>>> replica.on_message(Observation("tea", 0, 1.0, True, ()))
>>> with tempfile.TemporaryDirectory() as directory:
...     WarmStart.write(Path(directory), replica, {"ann": UserState("ann")})
...     warm = WarmStart.read(Path(directory))
>>> warm.meta["items"], warm.meta["users"], list(warm.users())
(1, 1, ['ann'])
>>> warm.replica(config).items.ids
['tea']
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from operators.engine_config import EngineConfig
from operators.replica import ModelReplica, ReplicaSnapshot
from operators.user_state import UserSnapshot, UserState

_FORMAT = 4


class WarmStartError(Exception):
    """A warm-start directory that cannot be used (the message says why)."""


@dataclass(frozen=True)
class WarmStart:
    meta: dict[str, object]
    #: The replica's snapshot and the lists it keeps to train on, by user.
    model: tuple[ReplicaSnapshot, dict[str, tuple[np.ndarray, np.ndarray]]]
    user_snapshots: dict[str, UserSnapshot]

    @staticmethod
    def write(directory: Path, replica: ModelReplica, users: dict[str, UserState]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        kept = {user: (kept.rows, kept.features) for user, kept in replica.open.items()}
        (directory / "model.pickle").write_bytes(pickle.dumps((replica.snapshot(), kept)))
        snapshots = {user_id: state.snapshot() for user_id, state in users.items()}
        (directory / "users.pickle").write_bytes(pickle.dumps(snapshots))
        meta = {
            "format": _FORMAT,
            "items": len(replica.items),
            "users": len(users),
            "events": replica.items.observed,
            "dimensions": replica.config.dimensions,
        }
        (directory / "meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))

    @classmethod
    def read(cls, directory: Path) -> WarmStart:
        try:
            meta = orjson.loads((directory / "meta.json").read_bytes())
            model = pickle.loads((directory / "model.pickle").read_bytes())
            users = pickle.loads((directory / "users.pickle").read_bytes())
        except FileNotFoundError as error:
            raise WarmStartError(
                f"{directory} is not a warm start ({Path(error.filename).name} is missing); "
                "write one with `streamrec pretrain HISTORY --out DIR`"
            ) from None
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise WarmStartError(f"cannot read the warm start in {directory}: {error}") from None
        if meta.get("format") != _FORMAT:
            raise WarmStartError(
                f"{directory} has warm-start format {meta.get('format')}, this streamrec reads "
                f"{_FORMAT}: pretrain again"
            )
        return cls(meta, model, users)

    @classmethod
    def for_config(cls, directory: Path, config: EngineConfig) -> WarmStart:
        """:meth:`read`, and check that ``config`` can start from it (before a job starts, so
        that a mismatch is one line, not a failing worker)."""
        warm = cls.read(directory)
        warm.check(config)
        return warm

    def check(self, config: EngineConfig) -> None:
        if self.meta.get("dimensions") != config.dimensions:
            raise WarmStartError(
                f"the warm start has {self.meta.get('dimensions')}-dimensional embeddings but "
                f"engine.dimensions is {config.dimensions}: pretrain with the same config"
            )

    def replica(self, config: EngineConfig) -> ModelReplica:
        self.check(config)
        snapshot, kept = self.model
        replica = ModelReplica.restore(snapshot, config)
        for user_id, (rows, features) in kept.items():
            replica.keep(user_id, rows, features)
        return replica

    def seen_items(self) -> dict[str, tuple[str, ...]]:
        """Each pretrained user's items (the evaluation leaves them out of the targets)."""
        return {user_id: state[2] for user_id, state in self.user_snapshots.items()}

    def last_event_times(self) -> dict[str, int]:
        """Each pretrained user's last event time."""
        return {user_id: state[-1] for user_id, state in self.user_snapshots.items()}

    def users(self) -> dict[str, UserState]:
        return {user_id: UserState.restore(state) for user_id, state in self.user_snapshots.items()}

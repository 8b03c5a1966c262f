"""How the driver tells a running population which members to drop (early stopping).

Tune can only continue or stop a whole trial. A population's trainable reports all its members
after each task and waits (function trainables report synchronously) until the driver has
processed the report; the driver posts the members its rungs stopped on a small named actor
before it lets the trial continue, and the trainable takes them before training the next task.
The actor (no CPU of its own) is started with the run when the space stops early (:meth:`start`:
it starts while the first populations train, not when the first stop waits for it, which cost
each first-wave population about a second on 2 cores), else at the first stop. It dies with the
driver, or when the run ends (:meth:`close`).
Why: docs/design.md, "The stop board".
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote(num_cpus=0)
class _Board:
    """Member trial ids to stop, per population id, until the population takes them."""

    def __init__(self) -> None:
        self.stops: dict[str, list[str]] = {}

    def post(self, population: str, members: list[str]) -> None:
        self.stops.setdefault(population, []).extend(members)

    def take(self, population: str) -> list[str]:
        return self.stops.pop(population, [])


class StopBoard:
    """The driver's side: ``post`` returns once the population can see the stops."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._actor: Any = None

    def start(self) -> None:
        """Start the actor without waiting for it (a ``post`` waits for it if need be)."""
        if self._actor is None:
            # On the driver's node: a worker node that goes away must not take the board along.
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), False)
            self._actor = _Board.options(name=self.name, scheduling_strategy=here).remote()

    def post(self, population: str, members: list[str]) -> None:
        self.start()
        ray.get(self._actor.post.remote(population, members))

    def close(self) -> None:
        if self._actor is not None:
            ray.kill(self._actor)
            self._actor = None


_FOUND: dict[str, Any] = {}  # per worker process: the board of each run, once it exists


def take_stops(name: str, population: str) -> list[str]:
    """The population's side: the members the driver stopped since the last call."""
    actor = _FOUND.get(name)
    if actor is None:
        try:
            actor = ray.get_actor(name)
        except ValueError:  # not started: nothing was stopped yet
            return []
        _FOUND[name] = actor
    return ray.get(actor.take.remote(population))

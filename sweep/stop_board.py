"""How the driver tells a running population which members to drop (early stopping).

Tune can only continue or stop a whole trial. A population's trainable reports all its members
after each task and waits (function trainables report synchronously) until the driver has
processed the report; the driver posts the members its rungs stopped here before it lets the trial
continue, and the trainable takes them before training the next task. One small actor per sweep
run, with no CPU of its own; it dies with the driver.
"""

from __future__ import annotations

import ray


@ray.remote(num_cpus=0)
class StopBoard:
    """Member trial ids to stop, per population id, until the population takes them."""

    def __init__(self) -> None:
        self.stops: dict[str, list[str]] = {}

    def post(self, population: str, members: list[str]) -> None:
        self.stops.setdefault(population, []).extend(members)

    def take(self, population: str) -> list[str]:
        return self.stops.pop(population, [])

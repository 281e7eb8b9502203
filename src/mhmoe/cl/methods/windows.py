"""Consolidation windows: on a stream without task boundaries, a method that consolidates at a task's end
(EWC's Fisher, GEM's memory) does so every `consolidate_every` steps instead, on a pseudo-task made of the
window's training examples. The loop never tells it where a task ends; the window is the method's own clock.
"""

from __future__ import annotations

from mhmoe.data.trace import Example, Task


class StepWindows:
    """Collects each step's examples and hands over a pseudo-task every `every` steps."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.steps = 0
        self.pending: list[Example] = []

    def add(self, examples: list[Example]) -> Task | None:
        """Record one step; at a window's end, its examples as a pseudo-task named window-<k>."""
        self.pending += examples
        self.steps += 1
        if self.steps % self.every:
            return None
        window = Task(f"window-{self.steps // self.every}", "accuracy", 1, {"train": self.pending})
        self.pending = []
        return window

    def state_dict(self) -> dict:
        return {"steps": self.steps, "pending": [[e.prompt, e.answer, e.features] for e in self.pending]}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self.pending = [Example(p, a, dict(f)) for p, a, f in state["pending"]]

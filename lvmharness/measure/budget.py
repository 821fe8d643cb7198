"""How long a timed measurement runs: warm-up and measured rounds.

Torch-free, so the case matrix (and the pytest plugin that reads it) can name a profile's budget without loading
PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimingConfig:
    warmup_rounds: int = 3
    warmup_s: float = 0.3
    max_warmup_rounds: int = 50
    budget_s: float = 2.0
    min_rounds: int = 5
    max_rounds: int = 200

    def __post_init__(self) -> None:
        if self.min_rounds < 1 or self.max_rounds < self.min_rounds:
            raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {self.min_rounds}, {self.max_rounds}")
        if self.warmup_rounds < 0 or self.budget_s < 0 or self.warmup_s < 0:
            raise ValueError("warmup_rounds, warmup_s and budget_s must be >= 0")

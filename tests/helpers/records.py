"""Result records for tests that need some in a run folder: one builder, the identity fields filled with a small
valid case that each test overrides where it matters."""

from __future__ import annotations

from typing import Any

from lvmharness.store.records import make_record


def record(run_id: str = "r", case: str | None = None, **over: Any) -> dict[str, Any]:
    """A valid record of ``run_id`` (a latency case of model ``m`` at batch 1, 32 px on the CPU unless ``over``
    says otherwise); ``case`` names the case id's bracket part."""
    fields: dict[str, Any] = dict(metric="latency", model="m", alias="m", family="vit", device="cpu", dtype="fp32",
                                  batch_size=1, img_size=32)
    fields.update(over)
    return make_record(run_id=run_id, case=case, **fields)

"""The dtype vocabulary: the names a record, a CLI option and a torch table use for a numeric precision.
Standard library only, so the CLI can offer its choices without importing torch.

Storage dtypes hold the weights and the input in that dtype; AMP modes keep fp32 weights and run the forward under
autocast in a low precision. The torch dtypes behind the names are ``runtime.devices.DTYPES`` (storage) and
``runtime.execution.DTYPE_MODES`` (all modes); both are keyed by these names, in this order.
"""

from __future__ import annotations

LOW_PRECISION_NAMES = ("bf16", "fp16")  # bfloat16 and IEEE half: what autocast can compute in
STORAGE_DTYPE_NAMES = ("fp32", *LOW_PRECISION_NAMES)
AMP_DTYPE_NAMES = tuple(f"amp_{name}" for name in LOW_PRECISION_NAMES)
# Every dtype mode a record can carry (the record schema's ``dtype`` enum): storage dtypes first, then AMP modes.
DTYPE_NAMES = (*STORAGE_DTYPE_NAMES, *AMP_DTYPE_NAMES)

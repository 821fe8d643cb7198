"""What a step's memory is made of: the categories of a memory breakdown, one vocabulary for every side.

The predictor and the measuring accountant (``lvmharness.measure.accounting``) file every live tensor storage
under one category; the record keys ``predicted_<category>_bytes`` (``lvmharness.store.keys``), ``lvm memory``,
the report and the page read the same names. Torch-free, so the report and the page import it without torch.

* ``params``, ``buffers``, ``optimizer_state``: exist before the step (the optimizer state from the first step on);
* ``grads``: a parameter's gradient, from the moment autograd hands it over;
* ``activations``: a storage first returned by an op in the forward (the input batch and the labels count here);
* ``temporaries``: a storage first returned in the backward or in ``zero_grad``; one first returned inside
  ``optimizer.step()`` is optimizer state.
"""

from __future__ import annotations

CATEGORIES = ("params", "buffers", "grads", "optimizer_state", "activations", "temporaries")
# What people read (the page's legend, prose); the names above are what records and JSON carry.
LABELS = {"params": "parameters", "buffers": "buffers", "grads": "gradients", "optimizer_state": "optimizer state",
          "activations": "activations", "temporaries": "temporaries"}
# The phases of a train step, in order, and the category of a storage first returned during each.
PHASES = ("forward", "backward", "optimizer_step", "zero_grad")
PHASE_CATEGORY = {"forward": "activations", "backward": "temporaries", "optimizer_step": "optimizer_state",
                  "zero_grad": "temporaries"}

"""Measured time per module: where a forward (and a training step's backward) spends its time.

Method (modules of this package, in the order the pass uses them):

* :mod:`.hooks`: forward pre/post hooks open and close a profiler range ``lvm.module::<path>`` around every module
  call;
* :mod:`.attribution`: ``torch.profiler`` records every aten op; each op's *self* time is summed onto the innermost
  module range that encloses it, a backward node's onto the module of the forward op with its sequence number;
* :mod:`.traffic`: a dispatch-mode pass counts per module the FLOPs (the MAC counter's formulas: 2 per
  multiply-accumulate) and the bytes every aten op reads and writes (from shapes and dtypes; views move nothing);
* :mod:`.document`: own times -> subtree times, shares, achieved FLOP/s and each leaf's place under the compute
  peak of :mod:`lvmharness.measure.peak` and the copy bandwidth of :mod:`lvmharness.measure.roofline` (the roofline
  of Williams, Waterman and Patterson, "Roofline: an insightful visual performance model", CACM 2009);
* :mod:`.run`: the pass itself (``measure_layers``, ``measure_from_spec``); it returns the document and writes
  nothing (``lvmharness.formats.graph_format.save_for_page`` writes it where the architecture page reads it).

Document format ``lvmharness.layers`` version 1 (``lvm layers --json`` prints it, ``-o`` writes it)::

    {"format": "lvmharness.layers", "version": 1, "model", "alias", "family", "img_size", "batch_size", "dtype",
     "device", "mode", "clock", "reference": {"p50_ms", "source", ...}, "totals": {...}, "peaks": {...},
     "by_type": {"attention": ms, ...}, "nodes": [NODE, ...]}   # nodes in pre-order, the model first
    NODE = {"path", "name", "type", "depth", "parent", "calls", "leaf", "layer_type", "ms", "fwd_ms", "bwd_ms",
            "own_ms", "share_time", "macs", "share_macs", "flops", "bytes", "achieved_flops_per_s",
            "own_ops": {op: ms}, "roofline": {...} | null}
"""

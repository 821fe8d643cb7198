"""Measurements: one metric a module; each returns results and writes no records or files.

* time: ``latency`` (the timer core and forward latency), ``budget`` (warm-up and round budgets; torch-free),
  ``contention`` (what the process got while timed), ``fidelity`` (our timer against torch's and a bare loop),
  ``instance`` (per-request latency over real samples);
* work: ``flops`` (exact MAC counts, conventions, the report), ``flop_formulas`` (which ops carry multiply-adds and
  their formulas), ``flop_fvcore`` (fvcore, the second counter), ``graph`` (the module tree with shapes, params,
  MACs and activation memory);
* time per layer: ``layers/`` (hooks, attribution of profiled ops, FLOPs and bytes per module, the document, the
  pass), ``peak`` (the compute roof, MFU's denominator, and the per-process probe cache),
  ``roofline`` (the copy-bandwidth roof and a layer's place);
* memory: ``memory`` (measured peaks in a child process), ``step`` (the train or inference step, its config and
  its tracked run), ``prediction`` (peaks predicted on fake tensors), ``step_summary`` (what ``lvm memory``
  prints), ``accounting`` (live tensor bytes), ``batch_search`` (the one largest-batch search, measured or
  predicted, and where it may stop).
"""

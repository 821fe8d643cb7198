"""Regression tracking over a project's history: a store of run folders keyed by commit and machine, series with
segments, change-point detection, a PR gate against pooled history, exports and a static site. Torch-free.

Modules: ``store`` (the history folder and its append-only index), ``series`` (case id x value key x machine,
segments), ``detect`` (change points), ``gate`` (``lvm compare --baseline history:BRANCH~N``), ``export``
(Bencher Metric Format, github-action-benchmark, CSV), ``site`` (one offline HTML page and a markdown summary).
"""

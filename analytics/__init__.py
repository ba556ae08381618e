"""Analytics: people per unit from Wi-Fi presence, over-occupancy flags, risk tiers, heatmaps.

Entry points (docs/analytics.md describes the method):

* ``analytics.pipeline.run_analysis(settings, config, ...)``: one run against the stores
  (what ``wifi-census analytics run`` does); ``analyse_frames`` is its pure part.
* ``analytics.heatmaps.build_heatmaps(...)`` / ``write_heatmaps(...)``: presence heatmaps as
  frames (for the dashboard) and as CSV, JSON and PNG files.
* ``analytics.rollup.RollupStore``: the nightly roll-up of raw presence in InfluxDB.
* ``wifi_census.accuracy.run_accuracy(...)``: accuracy against the simulator's truth (the only
  module that reads it; the estimator never imports it).

Modules are imported where used, so ``import analytics`` stays cheap for the CLI.
"""

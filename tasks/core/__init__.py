"""The spine every task is built on, written once.

config (Config ↔ flags ↔ YAML), cli (the four verbs), pipeline (sources, finalize), augment (shared
regularizers), training (strategy, optimizer, callbacks, fit), runs (run folders), export
(SavedModel in the TF Serving layout), plots (PNG pictures), runner (the job every task runs).
"""

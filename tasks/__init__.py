"""Applied deep-learning tasks: one module each, every one with the same verbs.

    python -m tasks                                  # lists the tasks
    python -m tasks.classification train             # trains on the built-in demo data
"""

import os

# Quiet TensorFlow's C++ info and warning lines before any task imports it (errors still show).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Task modules in the order the README's table lists them (one line each from their docstrings).
TASKS = ["classification", "detection", "segmentation", "image_generation", "sentiment", "summarization", "translation", "text_generation", "anomaly_detection", "graph_property"]

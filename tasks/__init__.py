"""Applied deep-learning tasks: one module each, every one with the same verbs.

    python -m tasks                                  # lists the tasks
    python -m tasks.classification train             # trains on the built-in demo data
"""

# Task modules in the order the README's table lists them (one line each from their docstrings).
TASKS = ["classification"]

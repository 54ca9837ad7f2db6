"""`python -m tasks`: one line per task with the command that trains it."""

import importlib.util
import pathlib

import tasks


def summary(name):
    """The first docstring line of `tasks/<name>.py`, read without importing TensorFlow."""
    spec = importlib.util.find_spec(f"tasks.{name}")
    text = pathlib.Path(spec.origin).read_text()
    quote = text.find('"""')
    return text[quote + 3:].strip().splitlines()[0] if quote >= 0 else ""


def main():
    width = max(len(name) for name in tasks.TASKS)
    print("Tasks (each has the verbs train, evaluate, predict, export):\n")
    for name in tasks.TASKS:
        print(f"  {name:<{width}}  {summary(name)}")
        print(f"  {'':<{width}}  python -m tasks.{name} train")
    print("\nAdd --help after a verb for its flags, e.g. python -m tasks.classification train --help")


if __name__ == "__main__":
    main()

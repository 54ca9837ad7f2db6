"""The front door: every documented command parses, every relative link resolves, and a command's
first printed line is the package's own (TensorFlow's start-up lines are hidden)."""

import importlib
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

import tasks

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
USER_DOCS = [*DOCS, REPO / "BENCHMARKS.md"]

# A C++ log line of TensorFlow / absl (`I0000 00:00:1796678745.96 7192 port.cc:153] ...`) or absl's banner.
TENSORFLOW_LOG_LINE = re.compile(r"^([IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl)")


def bash_blocks(path):
    """The fenced ```bash blocks of a Markdown file, continuation lines joined."""
    blocks = re.findall(r"^```bash\n(.*?)^```", path.read_text(), flags=re.S | re.M)
    return [block.replace("\\\n", " ") for block in blocks]


def documented_commands():
    """`(where, argv)` of every `python -m tasks.<task> ...` and `python benchmarks/...` in the docs."""
    found = []
    for path in DOCS:
        for block in bash_blocks(path):
            for line in block.splitlines():
                words = shlex.split(line, comments=True)
                for start in [index for index, word in enumerate(words) if word == "python"]:
                    command = []
                    for word in words[start:]:
                        if word in ("&&", "&", ";", "|", "||"):
                            break
                        command.append(word)
                    found.append((f"{path.relative_to(REPO)}: {line.strip()[:80]}", command))
    return found


COMMANDS = documented_commands()
TASK_COMMANDS = [(where, argv) for where, argv in COMMANDS if argv[1:2] == ["-m"] and argv[2].startswith("tasks.")]


def test_the_docs_hold_task_commands():
    assert len(TASK_COMMANDS) > 50


@pytest.mark.parametrize("where, argv", TASK_COMMANDS, ids=[where for where, _ in TASK_COMMANDS])
def test_documented_task_command_parses(where, argv):
    task = argv[2].removeprefix("tasks.")
    assert task in tasks.TASKS, f"{where}: unknown task {task}"
    from tasks.core import cli

    parser = cli.parser_for(importlib.import_module(f"tasks.{task}"))
    try:
        args = parser.parse_args(argv[3:])
    except SystemExit as stop:  # --help prints and exits 0
        assert stop.code == 0, where
        return
    if args.verb != "predict":
        args.config = None  # a documented YAML file is the user's own
        cli.config_from_args(importlib.import_module(f"tasks.{task}"), args)  # values checked too


def test_documented_benchmark_scripts_exist():
    scripts = [argv[1] for _, argv in COMMANDS if len(argv) > 1 and argv[1].startswith("benchmarks/")]
    assert scripts
    for script in scripts:
        assert (REPO / script).is_file(), script


def heading_anchors(path):
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def relative_links():
    links = []
    for path in USER_DOCS:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not re.match(r"[a-z]+:", target):
                links.append((path, target))
    return links


@pytest.mark.parametrize("path, target", relative_links(), ids=lambda value: str(value)[-60:])
def test_relative_link_resolves(path, target):
    file_part, _, anchor = target.partition("#")
    resolved = (path.parent / file_part).resolve() if file_part else path
    assert resolved.exists(), f"{path.relative_to(REPO)}: {target} does not exist"
    if anchor and resolved.suffix == ".md":
        assert anchor in heading_anchors(resolved), f"{path.relative_to(REPO)}: no heading #{anchor} in {file_part}"


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_user_doc_has_no_dates_first_person_or_outside_paths(path):
    text = path.read_text()
    assert "../shared" not in text
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))  # examples may hold dates
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", prose), "dates belong in BENCHMARKS.md rows"
    assert not re.search(r"\b(I(?!/O)|my|mine|me)\b", prose), "no first person"


def test_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_benchmarks_is_small():
    assert (REPO / "BENCHMARKS.md").stat().st_size <= 20_000


def first_line(argv, timeout=300):
    """The first non-empty line a command prints on stdout + stderr; the process is ended after it."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in process.stdout:
            if line.strip():
                return line.rstrip("\n")
        return ""
    finally:
        process.kill()
        process.wait(timeout=timeout)


@pytest.mark.subprocess
def test_train_help_first_line_is_the_packages_own():
    line = first_line([sys.executable, "-m", "tasks.classification", "train", "--help"])
    assert line.startswith("usage: python -m tasks.classification train"), line


@pytest.mark.subprocess
def test_demo_train_first_line_is_the_packages_own(tmp_path):
    line = first_line([
        sys.executable, "-m", "tasks.classification", "train", "--epochs", "1", "--batch-size", "256",
        "--runs-dir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "saved_models"),
    ])
    assert line and not TENSORFLOW_LOG_LINE.match(line), line

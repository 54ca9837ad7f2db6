"""The contract every task and every registered builder keeps: what DESIGN.md promises of each
task module (verbs, Config, kind) and of the registry (one kind per builder), tested over
`tasks.TASKS` and `applications.names()`, so a new task or builder is covered on its own."""

import dataclasses
import importlib
import inspect

import pytest

import applications
import tasks
from applications import registry
from tasks.core import cli
from tests.helpers import assert_one_line_error
from tests.helpers import run_in_process

STORY = ("Config", "load_data", "build_model", "baseline", "evaluate", "serving", "predict", "train")
# For each kind a task trains, a registered builder of another kind.
WRONG = {
    "classifier": "unet",
    "segmenter": "resnet20",
    "detector": "darknet_tiny",
    "generator": "resnet20",
    "sentence_classifier": "gpt",
    "seq2seq": "text_cnn",
    "extractive": "unet",
    "language_model": "transformer_seq2seq",
    "series": "mpnn",
    "graph": "vae",
}


def module_of(task):
    return importlib.import_module(f"tasks.{task}")


def kinds_of(module):
    return (module.KIND,) if isinstance(module.KIND, str) else tuple(module.KIND)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_task_module_tells_the_whole_story(task):
    module = module_of(task)
    for name in STORY:
        assert callable(getattr(module, name, None)), f"tasks.{task}.{name}"
    assert dataclasses.is_dataclass(module.Config)
    assert "cli.main(sys.modules[__name__])" in open(module.__file__).read()  # `python -m tasks.<task>`


    loader = inspect.signature(module.load_data).parameters  # one calling convention for the runner
    assert list(loader) == ["config", "saved"] and loader["saved"].default is None, f"tasks.{task}.load_data"
@pytest.mark.parametrize("task", tasks.TASKS)
def test_task_default_model_is_of_its_kind(task):
    module = module_of(task)
    assert applications.kind_of(module.Config().model) in kinds_of(module)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_task_help_lists_the_builders_of_its_kind(task, capsys):
    module = module_of(task)
    with pytest.raises(SystemExit):
        cli.main(module, ["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps help lines
    for name in applications.names(kinds_of(module)):
        assert name in text, name


@pytest.mark.parametrize("task", tasks.TASKS)
def test_wrong_kind_of_model_is_one_line_and_writes_nothing(task, tmp_path, capsys):
    module = module_of(task)
    wrong = WRONG[kinds_of(module)[0]]
    assert applications.kind_of(wrong) not in kinds_of(module)
    result = run_in_process(module, capsys, tmp_path, "train", "--model", wrong)
    assert_one_line_error(result, f"--model {wrong}", registry.KINDS[applications.kind_of(wrong)],
                          applications.names(kinds_of(module))[0])
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()


def test_every_builder_has_one_known_kind():
    assert set(registry._KINDS) == set(applications.names())
    assert set(registry._KINDS.values()) <= set(registry.KINDS)
    partition = sorted(name for kind in registry.KINDS for name in applications.names(kind))
    assert partition == applications.names()


def test_every_kind_a_task_names_exists_and_every_kind_has_a_task():
    named = {kind for task in tasks.TASKS for kind in kinds_of(module_of(task))}
    assert named == set(registry.KINDS)

"""The same four verbs for every task: `python -m tasks.<task> {train,evaluate,predict,export}`.

    if __name__ == "__main__":
        cli.main(sys.modules[__name__])

Every Config field is a flag; `--config run.yaml` loads a file and flags override it. A user
mistake prints one line (`error: …`) and exits non-zero; it never prints a traceback.
"""

import argparse
import contextlib
import pathlib
import sys

from tasks.core import config as config_lib
from tasks.core import export as export_lib
from tasks.core import runner
from tasks.core.errors import UserError
from tasks.core.runs import Run


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line."""

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


def _add_config_flags(parser, config_cls):
    parser.add_argument("--config", metavar="FILE", help="A YAML file of field: value; flags override it.")
    group = parser.add_argument_group("config fields (every field of Config)")
    for field in config_lib.fields(config_cls):
        flags = ["--" + field.name.replace("_", "-"), *field.metadata.get("aliases", ())]
        help_text = f"{field.metadata.get('help', '')} (default: {field.default!r})"
        if field.metadata.get("choices"):
            help_text += f" [{'|'.join(map(str, field.metadata['choices']))}]"
        if isinstance(field.default, bool):
            group.add_argument(
                *flags, dest=field.name, action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS, help=help_text,
            )
        else:
            group.add_argument(
                *flags, dest=field.name, default=argparse.SUPPRESS, metavar=type(field.default).__name__.upper(),
                help=help_text,
            )


def parser_for(module):
    task = runner.task_name(module)
    summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else task
    parser = _Parser(prog=f"python -m tasks.{task}", description=summary)
    verbs = parser.add_subparsers(dest="verb", metavar="{train,evaluate,predict,export}", parser_class=_Parser)
    verbs.required = True
    train = verbs.add_parser("train", help="Train, evaluate beside the baseline, and export.")
    _add_config_flags(train, module.Config)
    train.add_argument("--fresh", action="store_true", help="Start the run over instead of resuming it.")
    evaluate = verbs.add_parser("evaluate", help="Evaluate a finished run on the test split.")
    _add_config_flags(evaluate, module.Config)
    export = verbs.add_parser("export", help="Export a finished run to saved_models/<task>/<N>/.")
    _add_config_flags(export, module.Config)
    predict = verbs.add_parser("predict", help="Run the exported SavedModel on inputs.")
    predict.add_argument(
        "--model", default=str(pathlib.Path("saved_models") / task),
        help="An export root (latest version is used) or one version folder.",
    )
    predict.add_argument("--version", type=int, default=None, metavar="N",
                         help="The version folder under --model to run (default: the newest).")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="Files or strings to predict on.")
    predict.add_argument("--output", default="predictions", help="Folder for pictures, where the task draws any.")
    if hasattr(module, "predict_flags"):  # task-specific predict options, passed to predict()
        module.predict_flags(predict)
    return parser


def config_from_args(module, args):
    """The Config the flags describe; with --run-name of an existing run, that run's config first."""
    overrides = {
        field.name: getattr(args, field.name)
        for field in config_lib.fields(module.Config)
        if hasattr(args, field.name)
    }
    config = config_lib.build(module.Config, args.config, **overrides)
    if args.verb in ("evaluate", "export") and config.run_name:
        saved = Run.for_config(runner.task_name(module), config).config_file
        if saved.is_file() and not args.config:
            base = config_lib.load_file(module.Config, saved)
            base.update(overrides)
            config = config_lib.build(module.Config, None, **base)
    return config


def main(module, argv=None):
    """Parses the verb and flags, runs it, and turns user mistakes into one line and an exit code."""
    try:
        args = parser_for(module).parse_args(argv)
        if args.verb == "predict":
            options = {key: value for key, value in vars(args).items()
                       if key not in ("verb", "inputs", "model", "output", "version")}
            # A task whose INPUTs are never files defines `looks_like_path = None`.
            looks = getattr(module, "looks_like_path", export_lib.looks_like_path)
            if looks:
                export_lib.check_paths(args.inputs, looks)
            model = export_lib.resolve(args.model, args.version)
            module.predict(args.inputs, str(model), args.output, **options)
            return 0
        config = config_from_args(module, args)
        if args.verb == "train":
            with warnings_recap(config.verbose):
                module.train(config, fresh=args.fresh)
        else:
            _run_verb(module, args.verb, config)
        return 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume.", file=sys.stderr)
        sys.exit(130)


class _WarningRecorder:
    """A stand-in for sys.stderr that passes every write through and keeps the `warning:` lines."""

    def __init__(self, stream):
        self.stream = stream
        self.lines = []
        self.partial = ""

    def write(self, text):
        self.partial += text
        *complete, self.partial = self.partial.split("\n")
        self.lines += [line for line in complete if line.startswith("warning:")]
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def warnings_recap(verbose=1):
    """Repeats the `warning:` lines printed in the block after it ends without an error, under a
    `warnings:` heading, so they are not lost among the epoch logs (each once, in order)."""
    recorder = _WarningRecorder(sys.stderr)
    sys.stderr = recorder
    try:
        yield recorder.lines
    finally:
        sys.stderr = recorder.stream
    if recorder.lines and verbose:
        print("\nwarnings:", *(f"  {line}" for line in dict.fromkeys(recorder.lines)), sep="\n", file=sys.stderr)


def _run_verb(module, verb, config):
    run, model, info = runner.load_run(module, config)
    if verb == "evaluate":
        data = runner.load_data(module, config, run)
        runner.measure(module, model, data, config, run)
    else:
        path = runner.export(module, model, info, config, run)
        print(f"Exported {path}")

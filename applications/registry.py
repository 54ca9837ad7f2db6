"""The applications registry: one decorator, keyed by the builder function's own name and kind.

    @register(kind="classifier")
    def resnet20(input_shape=(32, 32, 3), num_classes=10, ...): ...

    get("resnet20")(input_shape=(28, 28, 1), num_classes=10)
    names()              # sorted list of every registered builder
    names("segmenter")   # only the builders of one kind
    kind_of("unet")      # "segmenter"
    arguments(get("resnet20"))  # the argument names it takes: {"input_shape", "num_classes", ...}

Importing this module imports the `applications` package first, whose `__init__` imports every
family module: every builder is registered before any lookup. A task names the kind it trains once; its help text, the one-line error for a wrong `--model` and
the tests come from `names(kind)`.
"""

import inspect

# Each kind, as errors name it; a builder declares exactly one.
KINDS = {
    "classifier": "an image classifier",  # (H, W, C) images -> class probabilities
    "segmenter": "a segmentation network",  # (H, W, C) images -> per-pixel class logits
    "detector": "a detection network",  # images -> box and class maps; its module gives losses and detections
    "generator": "an image generator",  # GAN or VAE, trained by its own train_step
    "sentence_classifier": "a sentence classifier",  # token ids -> class probabilities
    "seq2seq": "an encoder-decoder",  # source and target token ids -> next-token logits
    "extractive": "an extractive summarizer",  # a document's sentences -> a score per sentence
    "language_model": "a language model",  # token ids -> next-token logits
    "series": "a series network",  # windows of a series -> a reconstruction or forecast
    "graph": "a graph network",  # node and edge features -> per-graph outputs
}

_BUILDERS = {}
_KINDS = {}


def register(kind):
    """`@register(kind=...)`: registers the decorated builder under its own `__name__`.

    A second builder of the same name, or a kind outside `KINDS`, is an error.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown builder kind '{kind}'. Known kinds: {', '.join(KINDS)}")

    def decorate(builder):
        name = builder.__name__
        if name in _BUILDERS:
            raise ValueError(
                f"A model builder named '{name}' is already registered "
                f"(by {_BUILDERS[name].__module__}). Received: builder={builder.__module__}.{name}"
            )
        _BUILDERS[name] = builder
        _KINDS[name] = kind
        return builder

    return decorate


def get(name):
    """Returns the builder registered as `name`, or raises a ValueError listing what is."""
    if name not in _BUILDERS:
        raise ValueError(
            f"Model '{name}' is never registered. Registered models: {', '.join(names())}"
        )
    return _BUILDERS[name]


def kind_of(name):
    """The kind `name` was registered with (`get`'s error if it never was)."""
    get(name)
    return _KINDS[name]


def arguments(builder):
    """The names of the arguments `builder` takes (a frozenset)."""
    return frozenset(inspect.signature(builder).parameters)


def names(kind=None):
    """The sorted names of every registered builder, or of those of one kind (or kinds)."""
    kinds = (kind,) if isinstance(kind, str) else kind
    return sorted(name for name in _BUILDERS if kinds is None or _KINDS[name] in kinds)

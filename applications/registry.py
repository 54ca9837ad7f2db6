"""The applications registry: one decorator, keyed by the builder function's own name.

    @register
    def resnet20(input_shape=(32, 32, 3), num_classes=10, ...): ...

    get("resnet20")(input_shape=(28, 28, 1), num_classes=10)
    names()  # sorted list of every registered builder
    arguments(get("resnet20"))  # the argument names it takes: {"input_shape", "num_classes", ...}
"""

import inspect

_BUILDERS = {}


def register(builder):
    """Registers `builder` under its own `__name__`; a second builder of that name is an error."""
    name = builder.__name__
    if name in _BUILDERS:
        raise ValueError(
            f"A model builder named '{name}' is already registered "
            f"(by {_BUILDERS[name].__module__}). Received: builder={builder.__module__}.{name}"
        )
    _BUILDERS[name] = builder
    return builder


def get(name):
    """Returns the builder registered as `name`, or raises a ValueError listing what is."""
    _load_families()
    if name not in _BUILDERS:
        raise ValueError(
            f"Model '{name}' is never registered. Registered models: {', '.join(names())}"
        )
    return _BUILDERS[name]


def arguments(builder):
    """The names of the arguments `builder` takes (a frozenset)."""
    return frozenset(inspect.signature(builder).parameters)


def names():
    """The sorted names of every registered builder."""
    _load_families()
    return sorted(_BUILDERS)


def _load_families():
    # Importing the package imports every family module, and so registers every builder.
    import applications  # noqa: F401

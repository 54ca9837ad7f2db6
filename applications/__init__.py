"""Networks only: builder functions that return ordinary `keras.Model`s.

No file I/O, no datasets, no CLI. Every builder is registered by its own name:

    import applications
    model = applications.get("resnet20")(input_shape=(32, 32, 3), num_classes=10)
"""

from applications.registry import arguments
from applications.registry import get
from applications.registry import kind_of
from applications.registry import names
from applications.registry import register

__all__ = ["arguments", "get", "kind_of", "names", "register"]

# Family modules register their builders on import.
from applications import alexnet  # noqa: E402,F401
from applications import vgg  # noqa: E402,F401
from applications import inception  # noqa: E402,F401
from applications import resnet  # noqa: E402,F401
from applications import densenet  # noqa: E402,F401
from applications import xception  # noqa: E402,F401
from applications import fcn  # noqa: E402,F401
from applications import unet  # noqa: E402,F401
from applications import gpt  # noqa: E402,F401
from applications import lstm_lm  # noqa: E402,F401
from applications import series  # noqa: E402,F401
from applications import text_classifiers  # noqa: E402,F401
from applications import bert  # noqa: E402,F401
from applications import mpnn  # noqa: E402,F401
from applications import yolo  # noqa: E402,F401
from applications import rpn  # noqa: E402,F401
from applications import transformer  # noqa: E402,F401
from applications import rnn_attention  # noqa: E402,F401
from applications import dcgan  # noqa: E402,F401
from applications import vae  # noqa: E402,F401
from applications import airbench  # noqa: E402,F401
from applications import extractive  # noqa: E402,F401

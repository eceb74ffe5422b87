"""vcaption: describe images and videos with language (Keras 3 / TensorFlow)."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Quiet by default: TensorFlow's C++ log lines (CPU features, oneDNN, "failed call to cuInit" on
# hosts without a GPU) are printed when TensorFlow is first imported, before any command line is
# parsed, so the choice is made here; errors still reach the user as Python exceptions. A command run with --verbose, or an explicit TF_CPP_MIN_LOG_LEVEL, keeps them.
if "--verbose" not in _sys.argv:
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

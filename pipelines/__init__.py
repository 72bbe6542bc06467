"""Beam and TFDS: RLDS reading and writing, recipes, model handlers, the pipeline, the CLI.

Importing this package imports triton first when it is installed. triton imported after
TensorFlow kills the process (SIGSEGV; triton 3.8 with tensorflow-cpu 2.21), and torch
imports triton whenever diffusers or ``torch.compile`` load ``torch._dynamo``. Every
process that runs the pipeline (the launcher, each Beam worker unpickling our transforms)
imports this package before it reads any TFDS data, so here the order is always safe.

It also keeps Beam's RunInference module from importing torch when it loads
(``pipelines/beam_imports.py``): workers whose recipe needs no model never load it.
"""

import importlib.util

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

from pipelines import beam_imports  # noqa: E402

beam_imports.install()

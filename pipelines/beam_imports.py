"""Importing Beam's RunInference module without torch.

Beam's RunInference module (``apache_beam.ml.inference.base``) imports its optional
ModelManager while it loads, and with it torch and scipy: 3 to 4 s and hundreds of MB in
every process, even for a pipeline whose sources need neither (stored masks, procedural
backgrounds). Beam uses ModelManager only with ``use_model_manager=True`` (we never set
it) and imports it there if the first import failed. So that first import, and only it,
is refused: :func:`install` puts a finder on ``sys.meta_path`` that does it.
"""

import importlib.abc as _abc
import importlib.machinery as _machinery
import sys as _sys


class _BeamInferenceWithoutModelManager(_abc.MetaPathFinder):
    """Loads ``apache_beam.ml.inference.base`` with ``...model_manager`` not found meanwhile.

    base.py catches that ImportError (``ModelManager = None``, imported later on request)
    and sets ``resource`` to ``None`` with it; ``resource`` is given back afterwards.
    """

    BASE = "apache_beam.ml.inference.base"
    SKIPPED = "apache_beam.ml.inference.model_manager"

    def __init__(self):
        self.loading = False

    def find_spec(self, name, path=None, target=None):
        if name == self.SKIPPED and self.loading:
            raise ImportError(f"{name}: not imported while {self.BASE} loads (pipelines/__init__.py)")
        if name != self.BASE:
            return None
        spec = _machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderWithoutModelManager(spec.loader, self)
        return spec


class _LoaderWithoutModelManager(_abc.Loader):
    def __init__(self, loader, finder: _BeamInferenceWithoutModelManager):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._finder.loading = True
        try:
            self._loader.exec_module(module)
        finally:
            self._finder.loading = False
        if getattr(module, "resource", 0) is None:
            import resource

            module.resource = resource

    def __getattr__(self, name):  # get_source, get_filename, ... of the real loader
        return getattr(self._loader, name)


def install() -> None:
    """Load ``apache_beam.ml.inference.base`` without its ModelManager from now on (idempotent)."""
    if not any(isinstance(finder, _BeamInferenceWithoutModelManager) for finder in _sys.meta_path):
        _sys.meta_path.insert(0, _BeamInferenceWithoutModelManager())

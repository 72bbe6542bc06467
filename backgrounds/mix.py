"""A weighted mix of background sources: each request draws one child source by weight.

A recipe section looks like::

    background:
      source: mix
      sources:
        - {source: procedural, weight: 2, kinds: [noise, checker]}
        - {source: images, weight: 1, path: /data/photos}

The recipe loader turns each entry into a :class:`backgrounds.base.BackgroundSpec` whose
options it has checked against the child's ``Options`` dataclass, naming the key path in
its errors (``background.sources[1].kinds``); in Python, build the specs directly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from backgrounds.base import (
    BackgroundConfigError,
    BackgroundNote,
    BackgroundRequest,
    BackgroundSource,
    BackgroundSpec,
    build_background_source,
)
from backgrounds.images import FileAccess


@dataclasses.dataclass
class MixOptions:
    """Recipe keys of ``background.source: mix``."""

    # The children, each {source: NAME, weight: float (default 1), ...that source's options}.
    sources: list[BackgroundSpec]


class MixModels:
    """The children's models, in the order of ``sources``.

    A plain class because Beam keeps a weak reference to what ``load_model`` returns.
    """

    def __init__(self, models: list[Any]):
        self.models = models


class MixBackground(BackgroundSource):
    """Each request draws one child source by weight, from its own generator."""

    name = "mix"
    Options = MixOptions

    def __init__(self, options: MixOptions | None = None, files: FileAccess | None = None):
        super().__init__(options)
        self.files = files
        # Built on first use, once key_path is final, so child errors name the right keys.
        self._children: list[BackgroundSource] | None = None
        self._probabilities: np.ndarray | None = None

    @property
    def children(self) -> list[BackgroundSource]:
        """The child sources, in recipe order."""
        if self._children is None:
            self._build_children()
        return self._children

    @property
    def probabilities(self) -> np.ndarray:
        """Each child's chance to be drawn (the weights, normalised)."""
        if self._probabilities is None:
            self._build_children()
        return self._probabilities

    def _build_children(self) -> None:
        children, weights = [], []
        for index, spec in enumerate(self.options.sources):
            key = f"{self.key_path}.sources[{index}]"
            if not spec.weight > 0:
                raise BackgroundConfigError(f"{key}.weight must be > 0, got {spec.weight}")
            try:
                child = build_background_source(spec.source, spec.options, files=self.files)
            except KeyError as error:
                raise BackgroundConfigError(f"{key}.source: {error.args[0]}") from None
            child.key_path = key
            children.append(child)
            weights.append(spec.weight)
        if not children:
            raise BackgroundConfigError(f"{self.key_path}.sources is empty; name at least one source")
        self._children = children
        self._probabilities = np.asarray(weights) / np.sum(weights)

    def check(self) -> None:
        for child in self.children:
            try:
                child.check()
            except BackgroundConfigError as error:
                if str(error).startswith(child.key_path):
                    raise
                # A source that does not know its key path: say which child failed.
                raise BackgroundConfigError(f"{child.key_path} ({child.name}): {error}") from error

    def take_notes(self) -> list[BackgroundNote]:
        """The mix's own notes and its children's."""
        notes = super().take_notes()
        for child in self.children:
            notes += child.take_notes()
        return notes

    def load_model(self) -> MixModels:
        return MixModels([child.load_model() for child in self.children])

    def pick(self, request: BackgroundRequest) -> tuple[int, BackgroundRequest]:
        """The child drawn for ``request`` and the request to give it.

        The child gets a seed drawn after the pick, so its own draws do not repeat the
        ones that chose it.
        """
        rng = request.rng()
        index = int(rng.choice(len(self.probabilities), p=self.probabilities))
        child_seed = int(rng.integers(2**63))
        return index, dataclasses.replace(request, seed=child_seed)

    def generate(self, model: MixModels, request: BackgroundRequest) -> np.ndarray:
        index, child_request = self.pick(request)
        return self.children[index].generate(model.models[index], child_request)

    def generate_batch(self, model: MixModels, requests: list[BackgroundRequest]) -> list[np.ndarray]:
        """Requests grouped by their child, so children that batch (diffusion) still batch."""
        groups: dict[int, list[tuple[int, BackgroundRequest]]] = {}
        for position, request in enumerate(requests):
            index, child_request = self.pick(request)
            groups.setdefault(index, []).append((position, child_request))
        results: list[np.ndarray | None] = [None] * len(requests)
        for index, members in groups.items():
            backgrounds = self.children[index].generate_batch(model.models[index], [r for _, r in members])
            for (position, _), background in zip(members, backgrounds):
                results[position] = background
        return results

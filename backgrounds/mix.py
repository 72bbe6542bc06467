"""A weighted mix of background sources: each request draws one child source by weight.

A recipe section looks like::

    background:
      source: mix
      sources:
        - {source: procedural, weight: 2, kinds: [noise, checker]}
        - {source: images, weight: 1, path: /data/photos}

Children are built from their dicts by :func:`build_source`, which checks every key and
type against the child's ``Options`` dataclass and names the key path in its errors
(``background.sources[1].kinds``). The same helper builds a top-level section.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any, Mapping

import numpy as np

from backgrounds.base import (
    BackgroundConfigError,
    BackgroundRequest,
    BackgroundSource,
    background_source_class,
)
from backgrounds.images import FileAccess


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def checked_value(value: Any, hint: Any, key: str) -> Any:
    """``value`` if it has the type ``hint`` (ints are accepted, and converted, for floats).

    Supports the types recipe options use: ``str``, ``int``, ``float``, ``bool``,
    ``Optional``/unions, ``list[...]``, ``dict[..., ...]`` and ``Any``. Raises
    :class:`BackgroundConfigError` naming ``key`` otherwise.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return checked_value(value, option, key)
            except BackgroundConfigError:
                pass
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is list or origin is list:
        if isinstance(value, list):
            if not args:
                return list(value)
            return [checked_value(item, args[0], f"{key}[{index}]") for index, item in enumerate(value)]
    elif hint is dict or origin is dict:
        if isinstance(value, dict):
            if not args:
                return dict(value)
            return {
                checked_value(name, args[0], f"{key} key"): checked_value(item, args[1], f"{key}.{name}")
                for name, item in value.items()
            }
    else:
        raise TypeError(f"option {key} has a type recipes cannot express: {_type_name(hint)}")
    raise BackgroundConfigError(f"{key} must be {_type_name(hint)}, got {type(value).__name__} {value!r}")


def options_from_dict(options_class: type, values: Mapping[str, Any], key_path: str) -> Any:
    """An ``options_class`` dataclass built from recipe ``values``.

    Unknown keys, missing required keys and wrong types raise
    :class:`BackgroundConfigError` naming ``<key_path>.<key>``.
    """
    fields = {field.name: field for field in dataclasses.fields(options_class)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BackgroundConfigError(
            f"{key_path}.{unknown[0]} is not an option of this source; known: {', '.join(fields) or 'none'}"
        )
    missing = [
        name
        for name, field in fields.items()
        if name not in values
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise BackgroundConfigError(f"{key_path}.{missing[0]} is required")
    hints = typing.get_type_hints(options_class)
    return options_class(
        **{name: checked_value(value, hints[name], f"{key_path}.{name}") for name, value in values.items()}
    )


def build_source(
    name: str, options: Mapping[str, Any], key_path: str, files: FileAccess | None = None
) -> BackgroundSource:
    """The background source ``name`` with its options checked and built from ``options``.

    ``key_path`` is where the section sits in the recipe (``background``,
    ``background.sources[1]``); errors and the source's own ``check()`` messages use it.
    ``files`` reaches sources that read files (``images``, nested ``mix``).
    """
    try:
        source_class = background_source_class(name)
    except KeyError as error:
        raise BackgroundConfigError(f"{key_path}.source: {error.args[0]}") from None
    source_options = options_from_dict(source_class.Options, options, key_path)
    if "files" in inspect.signature(source_class).parameters:
        source = source_class(source_options, files=files)
    else:
        source = source_class(source_options)
    # Sources name their keys through this attribute (default "background").
    source.key_path = key_path
    return source


@dataclasses.dataclass
class MixOptions:
    """Recipe keys of ``background.source: mix``."""

    # The children, each {source: NAME, weight: float (default 1), ...that source's options}.
    sources: list[dict]


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
    #: Where this source's options sit in the recipe, for error messages (``build_source`` sets it).
    key_path = "background"

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
            if not isinstance(spec, dict) or not isinstance(spec.get("source"), str):
                raise BackgroundConfigError(f"{key} must be a mapping with a 'source' name, got {spec!r}")
            options = {name: value for name, value in spec.items() if name not in ("source", "weight")}
            weight = checked_value(spec.get("weight", 1.0), float, f"{key}.weight")
            if not weight > 0:
                raise BackgroundConfigError(f"{key}.weight must be > 0, got {weight}")
            children.append(build_source(spec["source"], options, key, files=self.files))
            weights.append(weight)
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

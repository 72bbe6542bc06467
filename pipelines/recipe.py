"""Recipes: one YAML file per augmentation, validated before any Beam work starts.

A recipe is parsed into typed dataclasses. Every section is checked key by key against
its dataclass's type hints; the ``segmentation`` and ``background`` sections are checked
against the chosen source's own ``Options`` dataclass, so each source documents its keys
in one place. Any problem raises :class:`RecipeError`, whose message names the key (or
path) and what is allowed; the command line turns it into exit status 2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import types
import typing
from typing import Any, Union

import yaml

from augment.settings import CompositeSettings
from backgrounds.base import (
    BackgroundConfigError,
    BackgroundSource,
    BackgroundSpec,
    background_source_class,
    build_background_source,
)
from segmentation.labels import TARGETS
from segmentation.sources import MaskSource, SourceConfigError, mask_source_class


class RecipeError(ValueError):
    """A recipe is invalid; the message names the key or path."""


@dataclasses.dataclass
class InputSettings:
    dir: str  # a TFDS version folder: local path or gs://
    splits: list[str] = dataclasses.field(default_factory=list)  # empty: every split
    cameras: list[str] = dataclasses.field(default_factory=list)  # empty: every camera
    max_episodes: int | None = None  # per split, the first N
    part: str | None = None  # "I/N": process the I-th of N parts (from 0) into <output.dir>/parts/I-of-N/


@dataclasses.dataclass
class SegmentationSettings:
    source: str = "none"  # none | dataset | robotseg | sam2 (see segmentation.sources)
    targets: list[str] = dataclasses.field(default_factory=lambda: ["robot"])  # kept as foreground
    batch_size: int = 1  # episodes per RunInference call
    large_model: bool = False  # one model per machine, shared by worker processes
    model_copies: int | None = None  # copies of a large model per machine
    keep_objects: bool = True  # task objects the source finds are kept exactly like the robot
    # Replacing the background with source: none replaces the robot too; only on purpose.
    allow_no_masks: bool = False
    options: Any = None  # the source's own Options dataclass


@dataclasses.dataclass
class BackgroundSettings:
    source: str = "none"  # none | original | procedural | images | clean_plate | mix | diffusion
    batch_size: int = 4  # episodes per RunInference call
    large_model: bool = False
    model_copies: int | None = None
    options: Any = None  # the source's own Options dataclass


@dataclasses.dataclass
class OutputSettings:
    dir: str  # the dataset goes to <dir>/<name>/<version>/, report and previews to <dir>/
    name: str | None = None  # default: the source dataset's name
    version: str | None = None  # default: the source dataset's version
    variants_per_episode: int = 1
    keep_original: bool = False  # also write each source episode unchanged
    write_masks: bool = False  # add steps/observation/<camera>_robot_mask
    previews: int = 4  # episodes (per split) with a contact sheet and a GIF
    preview_frames: int = 4  # frames per contact sheet
    overwrite: bool = False  # replace an existing output dataset


@dataclasses.dataclass
class RunnerSettings:
    workers: int = 0  # local worker processes; 0: every core
    progress_seconds: float = 10.0  # how often workers log progress


@dataclasses.dataclass
class Recipe:
    """A validated recipe. ``sha256`` is the hash of the effective (overridden) recipe."""

    input: InputSettings
    output: OutputSettings
    name: str = "recipe"
    description: str = ""
    seed: int = 0
    fail_fast: bool = False  # stop at the first failed episode instead of reporting it
    segmentation: SegmentationSettings = dataclasses.field(default_factory=SegmentationSettings)
    background: BackgroundSettings = dataclasses.field(default_factory=BackgroundSettings)
    composite: CompositeSettings = dataclasses.field(default_factory=CompositeSettings)
    runner: RunnerSettings = dataclasses.field(default_factory=RunnerSettings)
    sha256: str = ""
    text: str = ""  # the effective recipe as YAML (overrides applied), for the report

    @property
    def augments(self) -> bool:
        """Whether frames are changed (otherwise the recipe copies, or only adds masks)."""
        return self.background.source != "none"

    def plan_settings(self):
        """What every (episode, camera, variant) plan depends on: an ``augment.plan.PlanSettings``."""
        from augment.plan import PlanSettings  # imported on use: reading a recipe stays light

        return PlanSettings(
            seed=self.seed,
            variants=self.output.variants_per_episode,
            targets=tuple(self.segmentation.targets),
            keep_objects=self.segmentation.keep_objects,
            composite=self.composite,
        )

    def mask_source(self) -> MaskSource | None:
        """The configured mask source, or ``None``."""
        if self.segmentation.source == "none":
            return None
        return mask_source_class(self.segmentation.source)(self.segmentation.options)

    def background_source(self) -> BackgroundSource | None:
        """The configured background source, or ``None``."""
        if self.background.source == "none":
            return None
        # Sources that read files get Beam's file systems, so gs:// paths work.
        from pipelines.filesystems import beam_file_access

        return build_background_source(self.background.source, self.background.options, files=beam_file_access())


# ---------------------------------------------------------------------------------------
# Loading


# Caps on what a recipe file may cost to read. A recipe may come from a stranger: a few
# hundred bytes of YAML anchors and aliases ("billion laughs") expand to gigabytes once
# dumped, hashed or printed. Real recipes are a few KB with a few hundred nodes.
MAX_RECIPE_BYTES = 1 << 20  # 1 MiB: the largest recipe file read
MAX_RECIPE_NODES = 100_000  # YAML nodes after expanding every alias (each scalar, list and mapping counts 1)
MAX_SHOWN_CHARS = 200  # a value quoted in an error message is cut to this many characters


def load_recipe(path: str, overrides: list[str] | None = None) -> Recipe:
    """Read, override (``a.b=value`` strings) and validate the recipe at ``path``."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot read the recipe file ({e.strerror or e})") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: recipe file larger than {MAX_RECIPE_BYTES} bytes (pipelines.recipe.MAX_RECIPE_BYTES)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    raw = parse_yaml(text, path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    for override in overrides or []:
        apply_override(raw, override)
    recipe = recipe_from_dict(raw)
    recipe.sha256 = content_sha256(raw)
    recipe.text = yaml.safe_dump(raw, sort_keys=False)
    return recipe


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only), refusing duplicate keys and runaway aliases."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *anchor" merges the anchor's keys: overriding them is what it is for
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {show(key)} on line {line} (first on line {seen[key]})", key_node.start_mark
                    )
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: the base class reports it
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str, what: str = "") -> Any:
    """Plain data from YAML ``text`` (no tags that build objects), within the caps above.

    Raises :class:`RecipeError` naming ``where`` (the file, or ``--set key``) for invalid
    YAML, a duplicate key (with its line) or more than ``MAX_RECIPE_NODES`` nodes after
    aliases are expanded.
    """
    loader = _RecipeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_RECIPE_NODES:
            raise ValueError(
                f"the YAML expands to more than {MAX_RECIPE_NODES} values (anchors and aliases repeated "
                "over and over); refused (pipelines.recipe.MAX_RECIPE_NODES)"
            )
        return loader.construct_document(node)
    except ValueError as e:
        raise RecipeError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        if what:
            raise RecipeError(f"{where}: {what} is not valid YAML ({_yaml_problem(e, with_line=False)})") from None
        raise RecipeError(f"{where}: not valid YAML: {_yaml_problem(e, with_line=True)}") from None
    finally:
        loader.dispose()


def _yaml_problem(error: yaml.YAMLError, with_line: bool) -> str:
    """One line: what the parser found wrong, and where (PyYAML's own text spans several)."""
    problem = " ".join(str(getattr(error, "problem", "") or error).split())
    context = getattr(error, "context", None)
    if context and not str(context).startswith("while constructing"):
        problem = f"{' '.join(str(context).split())}: {problem}"
    mark = getattr(error, "problem_mark", None)
    if with_line and mark is not None and "line" not in problem:
        problem += f" (line {mark.line + 1}, column {mark.column + 1})"
    return _cut(problem, 1000)


def _expanded_size(root) -> int:
    """How many nodes ``root`` stands for once every alias is expanded, counted without expanding.

    An alias is the same node object as its anchor, so a node's size is computed once and
    reused; the count stops growing usefully past the cap, so it is clamped there.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # nodes whose children are being counted
    limit = MAX_RECIPE_NODES + 1
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done or not children:
            sizes[id(node)] = min(limit, 1 + sum(sizes[id(c)] for c in children))
            open_nodes.discard(id(node))
            continue
        if id(node) in open_nodes:
            raise ValueError("the YAML refers to itself (an alias inside its own anchor); refused")
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise ValueError("the YAML refers to itself (an alias inside its own anchor); refused")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def show(value: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with the full length said."""
    return _cut(repr(value), limit)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def content_sha256(raw: dict) -> str:
    """Hash of the recipe keys that decide the output's content.

    Where the output goes, whether it may be overwritten, how many local workers run and
    which part of a partitioned run this is do not change a single output byte, so they
    are left out: the same recipe run into two folders, or in parts that are merged,
    writes byte-identical episodes.
    """
    content = {k: v for k, v in raw.items() if k != "runner"}
    if isinstance(content.get("output"), dict):
        content["output"] = {k: v for k, v in content["output"].items() if k not in ("dir", "overwrite")}
    if isinstance(content.get("input"), dict):
        content["input"] = {k: v for k, v in content["input"].items() if k != "part"}
    return hashlib.sha256(yaml.safe_dump(content, sort_keys=True).encode()).hexdigest()


def apply_override(raw: dict, override: str) -> None:
    """Apply one ``--set a.b.c=value`` to the raw recipe; the value is parsed as YAML."""
    if "=" not in override:
        raise RecipeError(f"--set {override!r}: expected KEY=VALUE, for example output.dir=/tmp/out")
    dotted, value_text = override.split("=", 1)
    keys = dotted.strip().split(".")
    node = raw
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise RecipeError(f"--set {dotted}: {'.'.join(keys[: depth + 1])} is not a section")
        node = child
    if not all(keys):
        raise RecipeError(f"--set {override!r}: empty key in {dotted!r}")
    node[keys[-1]] = parse_yaml(value_text, f"--set {dotted}", f"the value {show(value_text)}") if value_text != "" else ""


_SECTIONS = {
    "input": InputSettings,
    "output": OutputSettings,
    "composite": CompositeSettings,
    "runner": RunnerSettings,
}


def recipe_from_dict(raw: dict) -> Recipe:
    """Validate a raw recipe mapping into a :class:`Recipe` (no file system checks)."""
    allowed = {f.name for f in dataclasses.fields(Recipe)} - {"sha256", "text"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise RecipeError(f"{unknown[0]}: unknown key; allowed top-level keys: {', '.join(sorted(allowed))}")
    for required in ("input", "output"):
        if required not in raw:
            raise RecipeError(f"{required}: missing section (it needs at least {required}.dir)")

    values: dict[str, Any] = {}
    for key in ("name", "description", "seed", "fail_fast"):
        if key in raw:
            values[key] = check_type(raw[key], typing.get_type_hints(Recipe)[key], key)
    for key, cls in _SECTIONS.items():
        if key in raw:
            values[key] = dataclass_from_dict(cls, raw[key], key)
    values["segmentation"] = _source_section(SegmentationSettings, raw.get("segmentation", {}), "segmentation", mask_source_class)
    values["background"] = _source_section(BackgroundSettings, raw.get("background", {}), "background", background_source_class)
    recipe = Recipe(**values)
    _check_cross_section(recipe)
    return recipe


def _source_section(cls, raw: Any, key_path: str, lookup) -> Any:
    """A section whose ``source`` key picks a registry entry that owns the other keys."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{key_path}: expected a mapping, got {type(raw).__name__}")
    common = {f.name for f in dataclasses.fields(cls)} - {"options"}
    section = dataclass_from_dict(cls, {k: v for k, v in raw.items() if k in common}, key_path)
    source_options = {k: v for k, v in raw.items() if k not in common}
    if section.source == "none":
        if source_options:
            first = sorted(source_options)[0]
            raise RecipeError(f"{key_path}.{first}: unknown key for {key_path}.source=none; allowed: {', '.join(sorted(common))}")
        return section
    section.options = _source_options(lookup, section.source, source_options, key_path, common)
    return section


def _source_options(lookup, name: str, raw: dict, key_path: str, common: set[str]) -> Any:
    """The ``Options`` of registry entry ``name``, built from ``raw`` (errors name ``key_path``)."""
    try:
        source_cls = lookup(name)
    except KeyError as e:
        raise RecipeError(f"{key_path}.source: {e.args[0]} (or none)") from None
    option_names = {f.name for f in dataclasses.fields(source_cls.Options)}
    unknown = sorted(set(raw) - option_names)
    if unknown:
        raise RecipeError(
            f"{key_path}.{unknown[0]}: unknown key for {key_path}.source={name}; "
            f"allowed: {', '.join(sorted(common | option_names))}"
        )
    options = dataclass_from_dict(source_cls.Options, raw, key_path)
    # Checks a source can make on its keys alone (e.g. sam2's overrides, which reach Hydra)
    # run as the recipe loads, so --check and every later step see only safe options.
    check_options = getattr(source_cls, "check_options", None)
    if check_options is not None:
        try:
            check_options(options)
        except (SourceConfigError, BackgroundConfigError, ValueError) as e:
            raise RecipeError(str(e)) from None
    return options


def _background_spec(raw: Any, key_path: str) -> BackgroundSpec:
    """One entry of a ``mix``'s ``sources``: ``{source: NAME, weight: W, ...its options}``."""
    if not isinstance(raw, dict) or not isinstance(raw.get("source"), str):
        raise RecipeError(f"{key_path}: expected a mapping with a 'source' name, got {show(raw)}")
    rest = {k: v for k, v in raw.items() if k not in ("source", "weight")}
    weight = check_type(raw.get("weight", 1.0), float, f"{key_path}.weight")
    options = _source_options(background_source_class, raw["source"], rest, key_path, {"source", "weight"})
    return BackgroundSpec(raw["source"], options, weight)


def _check_cross_section(recipe: Recipe) -> None:
    for target in recipe.segmentation.targets:
        if target not in TARGETS:
            raise RecipeError(f"segmentation.targets: unknown target {target!r}; allowed: {', '.join(TARGETS)}")
    _check_counts(recipe)
    _check_output_names(recipe.output)
    check_file_system(recipe.input.dir, "input.dir")
    check_file_system(recipe.output.dir, "output.dir")
    if recipe.input.part is not None:
        from pipelines.partition import parse_part

        try:
            parse_part(recipe.input.part)
        except ValueError as e:
            raise RecipeError(str(e)) from None
    if recipe.output.write_masks and recipe.segmentation.source == "none":
        raise RecipeError("output.write_masks: needs a segmentation.source (dataset, robotseg or sam2)")
    if (
        recipe.segmentation.source == "none"
        and recipe.background.source not in ("none", "original")
        and not recipe.segmentation.allow_no_masks
    ):
        raise RecipeError(
            f"segmentation.source: none with background.source: {recipe.background.source} would replace the "
            f"robot and the task objects with the new background in every frame; choose a mask source "
            f"(dataset, robotseg, sam2...) or set segmentation.allow_no_masks: true if that is what you want"
        )
    try:
        recipe.composite.validate()
    except ValueError as e:
        message = str(e)
        raise RecipeError(message if message.startswith("composite") else f"composite.{message}") from None


# (key path, value, smallest allowed, largest allowed or None, what it means)
def _count_rules(recipe: Recipe) -> list[tuple[str, Any, float, float | None, str]]:
    seg, bg, out = recipe.segmentation, recipe.background, recipe.output
    return [
        ("input.max_episodes", recipe.input.max_episodes, 1, None, "or null for all"),
        ("segmentation.batch_size", seg.batch_size, 1, None, "episodes per model call"),
        ("segmentation.model_copies", seg.model_copies, 1, None, "or null"),
        ("background.batch_size", bg.batch_size, 1, None, "episodes per model call"),
        ("background.model_copies", bg.model_copies, 1, None, "or null"),
        ("output.variants_per_episode", out.variants_per_episode, 1, _MAX_VARIANTS, "variants of each episode"),
        ("output.previews", out.previews, 0, None, "episodes per split with previews; 0 for none"),
        ("output.preview_frames", out.preview_frames, 1, None, "frames per contact sheet"),
        ("runner.workers", recipe.runner.workers, 0, None, "0 means every core"),
        ("runner.progress_seconds", recipe.runner.progress_seconds, 0.1, None, "seconds between progress lines"),
    ]


_MAX_VARIANTS = 1023  # output keys hold the original and the variants of an episode in 1024 slots


def _check_counts(recipe: Recipe) -> None:
    for key, value, low, high, meaning in _count_rules(recipe):
        if value is None:
            continue
        if value < low or (high is not None and value > high):
            allowed = f">= {low}" if high is None else f"between {low} and {high}"
            raise RecipeError(f"{key}: must be {allowed} ({meaning}), got {value}")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")
_VERSION = re.compile(r"\d+\.\d+\.\d+")


def _check_output_names(output: OutputSettings) -> None:
    """``output.name`` and ``output.version`` become folder names: no paths, TFDS's forms."""
    if output.name is not None and not _NAME.fullmatch(output.name):
        raise RecipeError(
            f"output.name: {output.name!r} is not a dataset name (letters, digits and '_', starting with a letter "
            "or digit; no '/', '.' or '..')"
        )
    if output.version is not None and not _VERSION.fullmatch(str(output.version)):
        raise RecipeError(f"output.version: {output.version!r} is not a version of the form MAJOR.MINOR.PATCH, e.g. 1.0.0")


def check_sources(recipe: Recipe, observation_features: dict, cameras: list[str]) -> None:
    """Ask each configured source whether it can run (paths, checkpoints, features)."""
    try:
        mask_source = recipe.mask_source()
        if mask_source is not None:
            mask_source.check(observation_features, cameras)
        background_source = recipe.background_source()
        if background_source is not None:
            background_source.check()
    except (SourceConfigError, BackgroundConfigError) as e:
        raise RecipeError(str(e)) from None


# ---------------------------------------------------------------------------------------
# Type checking from dataclass type hints


def dataclass_from_dict(cls, raw: Any, key_path: str):
    """Build dataclass ``cls`` from ``raw``, naming ``key_path.key`` in every error."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{key_path}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise RecipeError(f"{key_path}.{unknown[0]}: unknown key; allowed: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in raw:
            values[name] = check_type(raw[name], hints[name], f"{key_path}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{key_path}.{name}: required key is missing")
    return cls(**values)


def check_type(value: Any, hint: Any, key_path: str) -> Any:
    """Return ``value`` if it fits ``hint`` (ints accepted for floats), else raise naming the key."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return check_type(value, option, key_path)
            except RecipeError:
                pass
        raise RecipeError(f"{key_path}: expected {_type_name(hint)}, got {show(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{key_path}: expected a list ({_type_name(hint)}), got {show(value)}")
        (item,) = typing.get_args(hint) or (Any,)
        return [check_type(v, item, f"{key_path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{key_path}: expected a mapping ({_type_name(hint)}), got {show(value)}")
        key_type, value_type = typing.get_args(hint) or (Any, Any)
        return {check_type(k, key_type, key_path): check_type(v, value_type, f"{key_path}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{key_path}: expected a list ({_type_name(hint)}), got {show(value)}")
        return tuple(value)
    if hint is BackgroundSpec:
        return _background_spec(value, key_path)
    if dataclasses.is_dataclass(hint):
        return dataclass_from_dict(hint, value, key_path)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise RecipeError(f"{key_path}: expected {_type_name(hint)}, got {show(value)}")


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def check_file_system(path: str, key_path: str) -> None:
    """Raise :class:`RecipeError` naming ``key_path`` if ``path`` is a URL no installed file system reads.

    ``gs://`` needs Beam's GCP extra; without it Beam fails deep inside with a traceback.
    """
    if "://" not in path:
        return
    from apache_beam.io.filesystems import FileSystems  # imported on use: reading a recipe stays light

    try:
        FileSystems.get_filesystem(path)
    except ValueError:
        scheme = path.split("://", 1)[0]
        extra = " (install the gcp extra: pip install 'oxe-augment[gcp]')" if scheme == "gs" else ""
        raise RecipeError(f"{key_path}: no file system for {scheme}:// paths is installed{extra}: {show(path)}") from None


def resolve_path(path: str) -> str:
    """Absolute local path (remote URLs such as ``gs://`` unchanged).

    A relative path in a recipe (or a ``--set``) is relative to the current working
    directory, not to the recipe file: the shipped recipes name ``data/sample/...`` and
    ``out/...`` and are run from the repository root (``oxe-augment run configs/x.yaml``).
    """
    if "://" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))

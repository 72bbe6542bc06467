"""The augmentation pipeline: read -> segment -> background -> compose -> write.

:class:`AugmentPipeline` is what ``oxe-augment run`` calls. Its ``__call__`` reads as the
steps it takes: check the inputs, build each split's transform, run Beam through TFDS's
writer, then account for every episode in ``report.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import io
import json
import logging
import os
import time

import apache_beam as beam
import tensorflow_datasets as tfds
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import filesystems
from pipelines.console import Console, ProgressMonitor
from pipelines.output import OutputLocationError, OutputLock, OutputTransaction, check_output_items, check_output_location
from pipelines.partition import episode_range, parse_part, part_dir_name, part_of
from pipelines.reading import CopyEpisodes, CopyPlan, ReadEpisodes
from pipelines.recipe import Recipe, RecipeError, check_sources, resolve_path
from pipelines.records import RECORDS, WriteRecords
from pipelines.report import RunReport, build_report, read_records, write_report
from pipelines.rlds_io import DatasetError, ShardSpec, SourceDataset, open_dataset, output_features
from pipelines.tfds_writer import drop_empty_splits, tfds_writes

log = logging.getLogger("oxe_augment")

_RECORDS = "_records"  # per-episode records, in the run's scratch folder
_PROGRESS = "_progress"  # the workers' running totals, in the run's scratch folder
_VARIANT_SLOTS = 1024  # output keys per source episode: the original and up to 1023 variants
_SHARDS_PER_WORKER = 4  # whole shards are the unit of parallelism from this many per worker


def tool_version() -> str:
    try:
        return importlib.metadata.version("oxe-augment")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclasses.dataclass
class RunPlan:
    """Everything checked and derived before Beam starts."""

    source: SourceDataset
    splits: list[str]
    cameras: list[str]
    output_root: str  # output.dir
    dataset_dir: str  # output.dir/<name>/<version>
    name: str
    version: str
    features: tfds.features.FeaturesDict
    object_cameras: list[str] = dataclasses.field(default_factory=list)  # cameras given <camera>_object_mask
    shards: dict[str, list[ShardSpec]] = dataclasses.field(default_factory=dict)  # what this run reads, per split
    finished_part: str = ""  # input.part whose output is already complete: nothing to do
    warnings: list[str] = dataclasses.field(default_factory=list)  # said before the run and in the report

    def expected_episodes(self, max_episodes: int | None) -> int:
        """Input episodes this run reads, over all splits (``input.max_episodes`` applied)."""
        total = 0
        for shards in self.shards.values():
            for shard in shards:
                first, stop = episode_range(shard)
                if max_episodes is not None:
                    stop = min(stop, max_episodes)
                total += max(0, stop - first)
        return total


class AugmentPipeline:
    """Runs one recipe. ``beam_args`` are passed to Beam unchanged (runner options)."""

    def __init__(self, recipe: Recipe, beam_args: list[str] | None = None, verbose: bool = False, console: Console | None = None):
        self.recipe = recipe
        self.beam_args = list(beam_args or [])
        self.verbose = verbose
        self.console = console  # where progress goes; None: no progress line
        self.report_dir = ""  # after a run: where its report.json is (output.dir, or unpublished-*/ beside it)
        self.published = False  # after a run: whether its output replaced output.dir's

    def __call__(self, plan: RunPlan | None = None) -> RunReport:
        """Run the recipe; ``plan`` is :meth:`plan`'s result when the caller already checked."""
        start = time.perf_counter()

        # 1. Check inputs: dataset, splits, cameras, sources, output folder. No Beam yet.
        plan = plan or self.plan()
        log.debug("input %s: splits %s, cameras %s", plan.source.dir, plan.splits, plan.cameras)

        # 2. Open the output: one run at a time per output.dir, everything written into a
        #    scratch folder beside the earlier output, which stays untouched until the run
        #    has finished.
        with self._open_output(plan) as output:
            # 3. One transform per split, all in one Beam pipeline (TFDS creates it).
            split_transforms = {split: self.split_transform(plan, split, output.scratch) for split in plan.splits}

            # 4. Run, writing through TFDS's Beam writer, with the workers' progress shown.
            with self._progress(plan, output.scratch):
                self._write(plan, split_transforms, output.scratch)

            # 5. Account for every episode; a split in which nothing survived is named. A
            #    part records its dataset's files for merge to check.
            report = self._account(plan, output.scratch, wall_seconds=time.perf_counter() - start)
            if self.recipe.input.part is not None:
                from pipelines.merge import write_part_record

                part_label = os.path.basename(plan.output_root)
                write_part_record(output.scratch, f"{plan.name}/{plan.version}", part_label, self.recipe.sha256)

            # 6. Publish: the new dataset, report, failures and previews replace the old
            #    together. A run that wrote no episode never replaces a dataset: its report
            #    goes beside the earlier output instead.
            if report.episodes_written == 0 and output.replaces_a_dataset():
                self.report_dir, self.published = output.set_aside(), False
            else:
                output.commit()
                self.report_dir, self.published = plan.output_root, True
        return report

    @contextlib.contextmanager
    def _open_output(self, plan: RunPlan):
        """Hold output.dir's lock and yield the run's transaction, begun; abort it if the block fails.

        A busy output.dir or a leftover that recovery refuses is a ``RecipeError`` (exit 2),
        raised before anything in output.dir changed.
        """
        lock = OutputLock(plan.output_root, say=self.console.line if self.console else log.warning)
        output = OutputTransaction(plan.output_root, f"{plan.name}/{plan.version}")
        try:
            lock.acquire()
        except OutputLocationError as e:
            raise RecipeError(str(e)) from None
        try:
            output.begin()
        except BaseException as e:
            lock.release()
            if isinstance(e, OutputLocationError):
                raise RecipeError(str(e)) from None
            raise
        try:
            yield output
        except BaseException:
            output.abort()
            raise
        finally:
            lock.release()

    def _progress(self, plan: RunPlan, scratch: str):
        if self.console is None:
            return contextlib.nullcontext()
        expected = plan.expected_episodes(self.recipe.input.max_episodes)
        every = self.recipe.runner.progress_seconds
        return ProgressMonitor(filesystems.join(scratch, _PROGRESS), expected, self.console, every)

    def _write(self, plan: RunPlan, split_transforms: dict, scratch: str) -> None:
        source_info = plan.source.builder.info
        builder = tfds.dataset_builders.AdhocBuilder(
            name=plan.name,
            version=plan.version,
            features=plan.features,
            split_datasets=split_transforms,
            data_dir=scratch,
            description=_augmented_description(source_info.description, plan, self.recipe),
            citation=source_info.citation or None,
            homepage=source_info.homepage or None,
            release_notes=dict(getattr(source_info, "release_notes", None) or {}) or None,
            # Output keys are ordered by source index (_ordered_key): shards keep input order.
            disable_shuffling=True,
            file_format="tfrecord",
        )
        # TFDS prints "Downloading and preparing dataset..." (nothing is downloaded); the
        # run prints its own summary instead.
        quiet = contextlib.nullcontext() if self.verbose else contextlib.redirect_stdout(io.StringIO())
        if not self.verbose:
            tfds.disable_progress_bar()  # its bar ends before the work starts; ours follows the workers
        with tfds_writes(), quiet:  # same recipe and seed: same bytes; empty splits allowed
            builder.download_and_prepare(
                download_dir=filesystems.join(scratch, "_downloads"),  # TFDS wants one; nothing is downloaded
                download_config=tfds.download.DownloadConfig(beam_options=self.beam_options()),
                file_format="tfrecord",
            )

    def _account(self, plan: RunPlan, scratch: str, wall_seconds: float) -> RunReport:
        records = read_records(filesystems.join(scratch, _RECORDS, "records-*"))
        written_dataset = filesystems.join(scratch, plan.name, plan.version)
        empty = drop_empty_splits(written_dataset)
        if len(empty) == len(plan.splits):
            filesystems.delete_tree(written_dataset)  # no split holds an episode: no dataset
        report = build_report(
            records,
            recipe_name=self.recipe.name,
            recipe_sha256=self.recipe.sha256,
            input_dir=plan.source.dir,
            output_dataset=plan.dataset_dir if len(empty) < len(plan.splits) else "",
            wall_seconds=wall_seconds,
            splits=plan.splits,
            warnings=plan.warnings,
        )
        write_report(report, scratch, self.recipe.text)
        return report

    # -----------------------------------------------------------------------------------

    def plan(self) -> RunPlan:
        """Validate the recipe against the dataset; raises ``RecipeError`` (exit 2)."""
        recipe = self.recipe
        try:
            source = open_dataset(resolve_path(recipe.input.dir))
        except DatasetError as e:
            raise RecipeError(f"input.dir: {e}") from None
        splits = recipe.input.splits or list(source.shards)
        for split in splits:
            if split not in source.shards:
                raise RecipeError(f"input.splits: {split!r} is not a split of {source.dir}; it has {', '.join(source.shards)}")
        cameras = recipe.input.cameras or source.cameras
        for camera in cameras:
            if camera not in source.cameras:
                raise RecipeError(
                    f"input.cameras: {camera!r} is not a camera of {source.dir}; it has {', '.join(source.cameras)}"
                )
        check_sources(recipe, source.observation_features, cameras)

        output_root = resolve_path(recipe.output.dir)
        shards = {split: source.shards[split] for split in splits}
        if recipe.input.part is not None:
            # Part I of N reads its share of every split and writes a complete output of
            # its own under parts/, which `oxe-augment merge` joins.
            part, parts = parse_part(recipe.input.part)
            output_root = filesystems.join(output_root, "parts", part_dir_name(part, parts))
            shards = {split: part_of(shards[split], part, parts) for split in splits}
            shards = {split: chosen for split, chosen in shards.items() if chosen}
            splits = list(shards)
        name = recipe.output.name or source.name
        version = recipe.output.version or source.version
        dataset_dir = filesystems.join(output_root, name, version)
        try:
            check_output_location(output_root, source.dir)
        except OutputLocationError as e:
            raise RecipeError(str(e)) from None
        finished = recipe.input.part is not None and _finished_part(output_root, recipe)
        if not finished:
            try:
                check_output_items(output_root, f"{name}/{version}", recipe.output.overwrite)
            except OutputLocationError as e:
                raise RecipeError(str(e)) from None
        _check_protected_cameras(recipe, cameras)
        mask_cameras = {c: source.camera_shape(c)[:2] for c in cameras} if recipe.output.write_masks else {}
        mask_source = recipe.mask_source()
        with_objects = mask_source.object_cameras(source.observation_features, cameras) if mask_source is not None else []
        object_cameras = with_objects if recipe.output.write_masks else []
        object_shapes = {c: source.camera_shape(c)[:2] for c in object_cameras}
        features = output_features(source.features, mask_cameras=mask_cameras, object_cameras=object_shapes)
        return RunPlan(
            source,
            splits,
            cameras,
            output_root,
            dataset_dir,
            name,
            version,
            features,
            object_cameras,
            shards=shards,
            finished_part=recipe.input.part if finished else "",
            warnings=_object_mask_warnings(recipe, cameras, with_objects),
        )

    def split_transform(self, plan: RunPlan, split: str, work_dir: str) -> beam.PTransform:
        """The transform of one split; it writes records and previews under ``work_dir``."""
        shards = plan.shards[split]
        common = dict(
            shards=shards,
            features=plan.source.features,
            recipe=self.recipe,
            cameras=plan.cameras,
            work_dir=work_dir,
            spread=spread_episodes(len(shards), self.local_workers()),
        )
        if is_copy(self.recipe):
            copy = CopyPlan(len(plan.cameras), f"{plan.source.name}/{plan.source.version}", self.recipe.sha256, tool_version())
            return _AugmentSplit(**common, compose=copy)
        from pipelines.stages import ComposePlan  # imported on use: it brings the model packages

        return _AugmentSplit(
            **common,
            compose=ComposePlan(
                cameras=plan.cameras,
                camera_formats={c: plan.source.camera_format(c) for c in plan.cameras},
                plan=self.recipe.plan_settings(),
                augments=self.recipe.augments,
                keep_original=self.recipe.output.keep_original,
                write_masks=self.recipe.output.write_masks,
                object_cameras=tuple(plan.object_cameras),
                previews=self.recipe.output.previews,
                preview_frames=self.recipe.output.preview_frames,
                preview_dir=filesystems.join(work_dir, "previews"),
                source_dataset=f"{plan.source.name}/{plan.source.version}",
                recipe_sha256=self.recipe.sha256,
                tool_version=tool_version(),
            ),
        )

    def local_workers(self) -> int | None:
        """How many local worker processes run the job; ``None`` when the user picked the runner."""
        if any(a.startswith("--runner") for a in self.beam_args):
            return None
        return self.recipe.runner.workers or os.cpu_count() or 1

    def beam_options(self) -> PipelineOptions:
        """The user's Beam options; by default the DirectRunner on every local core."""
        args = list(self.beam_args)
        workers = self.local_workers()
        if workers is not None:
            args += local_runner_args(workers)
        if not any(a.startswith("--default_sdk_harness_log_level") for a in args) and not self.verbose:
            args.append("--default_sdk_harness_log_level=WARNING")
        return PipelineOptions(args)


class _AugmentSplit(beam.PTransform):
    """One split: read -> segment -> background -> compose; per-episode records and progress
    go to the run's ``work_dir``."""

    def __init__(
        self,
        *,
        shards: list[ShardSpec],
        features,
        recipe: Recipe,
        cameras: list[str],
        compose,  # a stages.ComposePlan, or a reading.CopyPlan for a recipe that changes nothing
        work_dir: str,
        spread: bool = True,
    ):
        super().__init__()
        self._shards = shards
        self._spread = spread
        self._features = features
        self._recipe = recipe
        self._cameras = cameras
        self._compose = compose
        self._records_dir = filesystems.join(work_dir, _RECORDS)
        self._progress_dir = filesystems.join(work_dir, _PROGRESS)
        self._split = shards[0].split

    def expand(self, pbegin):
        recipe = self._recipe
        common = dict(cameras=self._cameras, fail_fast=recipe.fail_fast)
        read = pbegin | "Read" >> ReadEpisodes(
            self._shards, self._features, recipe.input.max_episodes, recipe.fail_fast, spread=self._spread
        )
        episodes, records = read.episodes, [read[RECORDS]]
        if isinstance(self._compose, CopyPlan):
            # Nothing to segment, draw or compose: the copy's workers never import the
            # model packages (pipelines.stages, torch).
            composed = episodes | "Compose" >> beam.ParDo(CopyEpisodes(self._compose, recipe.fail_fast)).with_outputs(
                RECORDS, main="examples"
            )
            return self._finish(composed, records)
        from pipelines.handlers import BackgroundSourceHandler, MaskSourceHandler  # imported on use: torch
        from pipelines.stages import ComposeVariants, RunSourceStage

        mask_source = recipe.mask_source()
        if mask_source is not None:
            seg = recipe.segmentation
            handler = MaskSourceHandler(
                mask_source, batch_size=seg.batch_size, large_model=seg.large_model, model_copies=seg.model_copies, **common
            )
            segmented = episodes | "Segment" >> RunSourceStage(handler)
            episodes, records = segmented.episodes, records + [segmented[RECORDS]]

        background_source = recipe.background_source()
        if background_source is not None:
            bg = recipe.background
            handler = BackgroundSourceHandler(
                background_source,
                plan=recipe.plan_settings(),
                batch_size=bg.batch_size,
                large_model=bg.large_model,
                model_copies=bg.model_copies,
                **common,
            )
            drawn = episodes | "Background" >> RunSourceStage(handler)
            episodes, records = drawn.episodes, records + [drawn[RECORDS]]

        composed = episodes | "Compose" >> beam.ParDo(ComposeVariants(self._compose, recipe.fail_fast)).with_outputs(
            RECORDS, main="examples"
        )
        return self._finish(composed, records)

    def _finish(self, composed, records: list):
        """Records (and progress) of every stage to the scratch folder; the examples, ordered, to TFDS."""
        records = [*records, composed[RECORDS]]
        _ = (
            records
            | "AllRecords" >> beam.Flatten()
            | "WriteRecords"
            >> beam.ParDo(WriteRecords(self._split, self._records_dir, self._progress_dir, self._recipe.runner.progress_seconds))
        )
        # TFDS orders a split's records by key: integer keys in source order keep it.
        return composed.examples | "OrderKeys" >> beam.Map(lambda keyed: (_ordered_key(keyed[0]), keyed[1]))


def local_runner_args(workers: int) -> list[str]:
    """Beam options of the default local runner with ``workers`` worker processes."""
    # One worker runs in this process: a worker process would only add its start-up
    # (TensorFlow, Beam imports) and a gRPC hop per bundle.
    mode = "in_memory" if workers == 1 else "multi_processing"
    return ["--runner=DirectRunner", f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]


def is_copy(recipe: Recipe) -> bool:
    """Whether the recipe writes every episode as it is (plus provenance): no masks, no backgrounds."""
    return recipe.segmentation.source == "none" and recipe.background.source == "none" and not recipe.output.write_masks


def spread_episodes(shards: int, workers: int | None) -> bool:
    """Whether to redistribute a split's episodes over the workers after reading its shards.

    Whole shards are the unit of work otherwise. With at least ``_SHARDS_PER_WORKER``
    shards per worker they keep every worker busy (a last shard delays the end by at most
    its own read) and the redistribution would only shuffle every record through the
    runner once more; with fewer, or on a runner we did not pick (Dataflow scales its
    workers), episodes are spread. One worker has nothing to spread over.
    """
    if workers is None:
        return True
    return workers > 1 and shards < _SHARDS_PER_WORKER * workers


def _ordered_key(output_key: str) -> int:
    """``<split>/<index>[/original|/v<k>]`` -> an integer that sorts in source order.

    The original (or a copy) comes first, then the variants in order.
    """
    parts = output_key.split("/")
    index, variant = int(parts[1]), parts[2] if len(parts) > 2 else "original"
    slot = 0 if variant == "original" else 1 + int(variant[1:])
    return index * _VARIANT_SLOTS + slot


def _augmented_description(source_description: str, plan: RunPlan, recipe: Recipe) -> str:
    """The source's description, then what oxe-augment did to it."""
    done = (
        f"Augmented by oxe-augment {tool_version()} from {plan.source.name} {plan.source.version} with recipe "
        f"{recipe.name!r} (sha256 {recipe.sha256[:12]}): segmentation {recipe.segmentation.source}, "
        f"background {recipe.background.source}, {recipe.output.variants_per_episode} variant(s) per episode. "
        "Each episode's episode_metadata/augmentation names its source episode and variant."
    )
    return f"{source_description.strip()}\n\n{done}" if source_description and source_description.strip() else done


def _object_mask_warnings(recipe: Recipe, cameras: list[str], with_objects: list[str]) -> list[str]:
    """``keep_objects: true`` keeps only the objects a source has masks for; say where it has none.

    Without object masks the task's objects are background like the rest of the scene, and
    a new background paints over them: the recipe asked to keep them, so this is said
    before the run and in the report rather than done silently.
    """
    seg = recipe.segmentation
    if not seg.keep_objects or seg.source == "none" or recipe.background.source in ("none", "original"):
        return []
    missing = [c for c in cameras if c not in with_objects]
    if not missing:
        return []
    return [
        f"segmentation.keep_objects: true, but segmentation.source {seg.source} gives no task-object masks for "
        f"camera(s) {', '.join(missing)}: the task's objects there are replaced by the new background like the rest "
        "of the scene. To keep them, use segmentation.source: sam3 with object_prompts (or objects_from_instruction: "
        "true), or source: dataset with stored <camera>_object_mask features (segmentation.object_feature); "
        "set keep_objects: false to silence this"
    ]


def _check_protected_cameras(recipe: Recipe, cameras: list[str]) -> None:
    for camera in recipe.composite.protect:
        if camera != "*" and camera not in cameras:
            raise RecipeError(
                f'composite.protect.{camera}: not a camera of this run; cameras: {", ".join(cameras)} (or "*" for all)'
            )


def _finished_part(part_dir: str, recipe: Recipe) -> bool:
    """Whether ``part_dir`` holds this part finished with this recipe (nothing left to do).

    A part finished with another recipe (another seed, say) is not: without
    ``output.overwrite`` the run refuses, naming both recipe hashes; with it, the part runs again.
    """
    report_path, record_path = filesystems.join(part_dir, "report.json"), filesystems.join(part_dir, "part.json")
    if not (filesystems.exists(report_path) and filesystems.exists(record_path)):
        return False
    try:
        made_with = json.loads(filesystems.read_bytes(record_path)).get("recipe_sha256")
    except (ValueError, AttributeError):
        made_with = None
    if made_with == recipe.sha256:
        return True
    if not recipe.output.overwrite:
        raise RecipeError(
            f"input.part {recipe.input.part}: {part_dir} holds this part finished with a different recipe "
            f"(recipe_sha256 {str(made_with)[:12]}, this recipe's {recipe.sha256[:12]}); set output.overwrite: true "
            "to run it again with this recipe, or choose another output.dir"
        )
    return False

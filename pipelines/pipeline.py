"""The augmentation pipeline: read -> segment -> background -> compose -> write.

:class:`AugmentPipeline` is what ``oxe-augment run`` calls. Its ``__call__`` reads as the
steps it takes: check the inputs, build each split's transform, run Beam through TFDS's
writer, then account for every episode in ``report.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import importlib.metadata
import logging
import os
import time

import apache_beam as beam
import tensorflow_datasets as tfds
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import filesystems
from pipelines.handlers import BackgroundSourceHandler, MaskSourceHandler
from pipelines.recipe import Recipe, RecipeError, check_sources, resolve_path
from pipelines.report import RunReport, build_report, read_records, write_report
from pipelines.rlds_io import DatasetError, ShardSpec, SourceDataset, deterministic_serialization, open_dataset, output_features
from pipelines.stages import RECORDS, ComposePlan, ComposeVariants, LogProgress, ReadEpisodes, RunSourceStage

log = logging.getLogger("oxe_augment")

_WORK = "_work"  # scratch folder under output.dir for per-episode records


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


class AugmentPipeline:
    """Runs one recipe. ``beam_args`` are passed to Beam unchanged (runner options)."""

    def __init__(self, recipe: Recipe, beam_args: list[str] | None = None, verbose: bool = False):
        self.recipe = recipe
        self.beam_args = list(beam_args or [])
        self.verbose = verbose

    def __call__(self) -> RunReport:
        start = time.perf_counter()

        # 1. Check inputs: dataset, splits, cameras, sources, output folder. No Beam yet.
        plan = self.plan()
        log.info("input %s: splits %s, cameras %s", plan.source.dir, plan.splits, plan.cameras)

        # 2. One transform per split, all in one Beam pipeline (TFDS creates it).
        work_dir = filesystems.join(plan.output_root, _WORK)
        filesystems.delete_tree(work_dir)
        split_transforms = {split: self.split_transform(plan, split, work_dir) for split in plan.splits}

        # 3. Run, writing through TFDS's Beam writer.
        builder = tfds.dataset_builders.AdhocBuilder(
            name=plan.name,
            version=plan.version,
            features=plan.features,
            split_datasets=split_transforms,
            data_dir=plan.output_root,
            description=f"{plan.source.name} {plan.source.version} augmented by oxe-augment recipe {self.recipe.name}",
            file_format="tfrecord",
        )
        # TFDS prints "Downloading and preparing dataset..." (nothing is downloaded); the
        # run prints its own summary instead.
        quiet = contextlib.nullcontext() if self.verbose else contextlib.redirect_stdout(io.StringIO())
        with deterministic_serialization(), quiet:  # same recipe and seed: same bytes
            builder.download_and_prepare(
                download_dir=filesystems.join(work_dir, "downloads"),  # TFDS wants one; nothing is downloaded
                download_config=tfds.download.DownloadConfig(beam_options=self.beam_options()),
                file_format="tfrecord",
            )

        # 4. Account for every episode.
        records = read_records(filesystems.join(work_dir, "records-*"))
        report = build_report(
            records,
            recipe_name=self.recipe.name,
            recipe_sha256=self.recipe.sha256,
            input_dir=plan.source.dir,
            output_dataset=plan.dataset_dir,
            wall_seconds=time.perf_counter() - start,
        )
        write_report(report, plan.output_root)
        filesystems.delete_tree(work_dir)
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
                raise RecipeError(f"input.cameras: {camera!r} is not a camera of {source.dir}; it has {', '.join(source.cameras)}")
        check_sources(recipe, source.observation_features, cameras)

        output_root = resolve_path(recipe.output.dir)
        name = recipe.output.name or source.name
        version = recipe.output.version or source.version
        dataset_dir = filesystems.join(output_root, name, version)
        if filesystems.folder_exists(dataset_dir):
            if not recipe.output.overwrite:
                raise RecipeError(f"output.dir: {dataset_dir} already exists; set output.overwrite: true to replace it")
            filesystems.delete_tree(dataset_dir)
        mask_cameras = {c: source.camera_shape(c)[:2] for c in cameras} if recipe.output.write_masks else {}
        features = output_features(source.features, mask_cameras=mask_cameras)
        return RunPlan(source, splits, cameras, output_root, dataset_dir, name, version, features)

    def split_transform(self, plan: RunPlan, split: str, work_dir: str) -> beam.PTransform:
        return _AugmentSplit(
            shards=plan.source.shards[split],
            features=plan.source.features,
            recipe=self.recipe,
            cameras=plan.cameras,
            compose=ComposePlan(
                cameras=plan.cameras,
                camera_formats={c: plan.source.observation_features[c].encoding_format or "png" for c in plan.cameras},
                targets=list(self.recipe.segmentation.targets),
                seed=self.recipe.seed,
                variants=self.recipe.output.variants_per_episode,
                augments=self.recipe.augments,
                keep_original=self.recipe.output.keep_original,
                write_masks=self.recipe.output.write_masks,
                composite=self.recipe.composite,
                previews=self.recipe.output.previews,
                preview_frames=self.recipe.output.preview_frames,
                preview_dir=filesystems.join(plan.output_root, "previews"),
                source_dataset=f"{plan.source.name}/{plan.source.version}",
                recipe_sha256=self.recipe.sha256,
                tool_version=tool_version(),
            ),
            records_prefix=filesystems.join(work_dir, f"records-{split}"),
        )

    def beam_options(self) -> PipelineOptions:
        """The user's Beam options; by default the DirectRunner on every local core."""
        args = list(self.beam_args)
        if not any(a.startswith("--runner") for a in args):
            workers = self.recipe.runner.workers or os.cpu_count() or 1
            # One worker runs in this process: a worker process would only add its
            # start-up (TensorFlow, torch, Beam imports) and a gRPC hop per bundle.
            mode = "in_memory" if workers == 1 else "multi_processing"
            args += ["--runner=DirectRunner", f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
        if not any(a.startswith("--default_sdk_harness_log_level") for a in args) and not self.verbose:
            args.append("--default_sdk_harness_log_level=WARNING")
        return PipelineOptions(args)


class _AugmentSplit(beam.PTransform):
    """One split: read -> segment -> background -> compose; records to ``records_prefix``."""

    def __init__(self, *, shards: list[ShardSpec], features, recipe: Recipe, cameras: list[str], compose: ComposePlan, records_prefix: str):
        super().__init__()
        self._shards = shards
        self._features = features
        self._recipe = recipe
        self._cameras = cameras
        self._compose = compose
        self._records_prefix = records_prefix
        self._split = shards[0].split
        expected = sum(shard.expected for shard in shards)
        self._expected = min(expected, recipe.input.max_episodes or expected)

    def expand(self, pbegin):
        recipe = self._recipe
        common = dict(cameras=self._cameras, fail_fast=recipe.fail_fast)
        read = pbegin | "Read" >> ReadEpisodes(self._shards, self._features, recipe.input.max_episodes, recipe.fail_fast)
        episodes, records = read.episodes, [read[RECORDS]]

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
                background_source, seed=recipe.seed, variants=recipe.output.variants_per_episode, composite=recipe.composite,
                batch_size=bg.batch_size, large_model=bg.large_model, model_copies=bg.model_copies, **common,
            )
            drawn = episodes | "Background" >> RunSourceStage(handler)
            episodes, records = drawn.episodes, records + [drawn[RECORDS]]

        composed = episodes | "Compose" >> beam.ParDo(ComposeVariants(self._compose, recipe.fail_fast)).with_outputs(RECORDS, main="examples")
        records.append(composed[RECORDS])

        _ = (
            records
            | "AllRecords" >> beam.Flatten()
            | "Progress" >> beam.ParDo(LogProgress(self._split, self._expected, recipe.runner.progress_seconds))
            | "RecordJson" >> beam.Map(lambda r: r.to_json())
            | "WriteRecords" >> beam.io.WriteToText(self._records_prefix, file_name_suffix=".jsonl")
        )
        return composed.examples

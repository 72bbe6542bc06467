"""The launch commands in docs/dataflow.md parse with Beam's own PipelineOptions, values where they belong."""

from __future__ import annotations

import re

from apache_beam.options.pipeline_options import (
    DebugOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SparkRunnerOptions,
    StandardOptions,
    WorkerOptions,
)

from tests.conftest import REPO


def launch_commands() -> list[tuple[list[str], list[str]]]:
    """(oxe-augment arguments, Beam arguments) of every ``oxe-augment run`` code block."""
    text = (REPO / "docs" / "dataflow.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        line = block.replace("\\\n", " ")
        if "oxe-augment run" not in line:
            continue
        # The doc leaves the ';' of --dataflow_service_options unquoted (see its note):
        # split on whitespace as Beam receives the value once the shell quoting is gone.
        words = line.split()
        split_at = words.index("--")
        commands.append((words[:split_at], words[split_at + 1 :]))
    return commands


def by_runner(runner: str) -> list[PipelineOptions]:
    return [PipelineOptions(beam) for _, beam in launch_commands() if f"--runner={runner}" in beam]


def test_the_doc_has_l4_h100_flink_and_spark_commands():
    runners = [next(a for a in beam if a.startswith("--runner=")) for _, beam in launch_commands()]
    assert runners.count("--runner=DataflowRunner") == 2
    assert "--runner=FlinkRunner" in runners and "--runner=SparkRunner" in runners
    for cli, _ in launch_commands():
        assert cli[:2] == ["oxe-augment", "run"] and cli[2].startswith("configs/")
        assert (REPO / cli[2]).exists(), cli[2]


def test_dataflow_gpu_options_land_where_dataflow_reads_them():
    l4, h100 = by_runner("DataflowRunner")
    for options, accelerator, machine in ((l4, "nvidia-l4", "g2-standard-8"), (h100, "nvidia-h100-80gb", "a3-highgpu-1g")):
        assert options.view_as(StandardOptions).runner == "DataflowRunner"
        cloud = options.view_as(GoogleCloudOptions)
        assert (cloud.project, cloud.region, cloud.temp_location) == ("P", "us-central1", "gs://B/tmp")
        assert cloud.dataflow_service_options == [f"worker_accelerator=type:{accelerator};count:1;install-nvidia-driver"]
        worker = options.view_as(WorkerOptions)
        assert worker.machine_type == machine
        assert worker.sdk_container_image.endswith("/oxe-augment:0.1.0")
        assert worker.max_num_workers > 0 and worker.disk_size_gb >= 100
    assert "no_use_multiple_sdk_containers" in l4.view_as(DebugOptions).experiments
    assert h100.view_as(DebugOptions).number_of_worker_harness_threads == 8


def test_flink_and_spark_options_land_where_their_runners_read_them():
    (flink,) = by_runner("FlinkRunner")
    assert flink.view_as(FlinkRunnerOptions).flink_master == "flink-jobmanager:8081"
    assert flink.view_as(FlinkRunnerOptions).parallelism == 16
    assert flink.view_as(PortableOptions).environment_type == "DOCKER"
    assert flink.view_as(PortableOptions).environment_config.endswith("/oxe-augment:0.1.0")
    (spark,) = by_runner("SparkRunner")
    assert spark.view_as(SparkRunnerOptions).spark_master_url == "spark://spark-master:7077"
    assert spark.view_as(PortableOptions).environment_type == "EXTERNAL"
    assert spark.view_as(PortableOptions).environment_config == "localhost:50000"


def test_no_option_is_unknown_to_beam():
    known = set(PipelineOptions([]).get_all_options())  # every option Beam's parsers declare
    assert "flink_master" in known and "no_such_option" not in known
    for _, beam in launch_commands():
        unknown = [a for a in beam if a.split("=", 1)[0].lstrip("-") not in known]
        assert unknown == [], unknown

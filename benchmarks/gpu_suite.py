"""The GPU suite: every GPU figure of the project in one run, written to one JSON file.

On one CUDA GPU, in under 8 minutes (``--total-seconds``, default 470), it measures

* ``robotseg``: RobotSeg video-inference frames/s at 512 and 1024 px model input, fp32 and
  bf16 autocast, with and without ``torch.compile`` of the image encoder (the published
  architecture, ``robotseg-infer`` (the release's config) with its ``image_size`` set; random
  weights unless ``--robotseg-checkpoint``);
* ``sam3``: SAM 3 video frames/s through ``segmentation.sam3_source.Sam3Video`` (the
  ``sam3`` mask source's model wrapper), text prompts for the robot and two objects
  (the real-size ``Sam3VideoConfig()`` with random weights in bf16, unless ``--sam3-model``);
* ``diffusion``: diffusion backgrounds per second at 512 px through
  ``DiffusionInpaintBackground.generate_batch`` (a randomly initialised full-size SD 1.5
  inpainting pipeline in fp16, unless ``--sd-model``);
* ``pipeline``: the whole pipeline, ``oxe-augment run configs/segment_robotseg.yaml`` with
  RobotSeg on the GPU, on sample data from ``oxe-augment sample-data`` (frames/s from its
  ``report.json``).

Each section runs in its own process with its own time cap (``--cap-SECTION``); a section
that fails or runs past its cap records the error (and what it had measured) in the JSON
and the suite goes on. Inside a section every measurement is tried on its own: an error
(out of memory, a compile failure) is recorded beside the others' figures, and a measurement
is not started with less than 5 s of its section's cap left (recorded as not started).

Compiled RobotSeg: before ``torch.compile`` the image encoder runs once eagerly, since
sam2's position encoding fills a cache on its first call and a graph traced before that
is recompiled on the second call; then two untimed warm-up calls per setting (the bf16
records of a compiled model include a recompile for autocast there, not in the timing).
``dynamo_graphs_so_far`` counts the graphs compiled in the section: one per size and effective dtype
means no recompile happened inside the timed runs.

``--dry-run`` runs everything on the CPU at tiny sizes (RobotSeg ``robotseg-tiny`` at 64
and 128 px, a tiny SAM 3, the tests' tiny SD inpainting pipeline at 64 px, a 2-episode
32 px sample dataset): the same code paths and the same JSON layout with ``"dry_run": true``,
so the suite is known to work before a GPU is there. Its numbers say nothing about speed.
In the dry run ``torch.compile`` uses the ``eager`` backend (Dynamo's tracing without
Inductor's code generation, which takes minutes on two CPU cores); ``bf16`` records run
float32, as RobotSeg's bf16 is CUDA autocast only (``bf16_effective`` says so).

    bash benchmarks/gpu_suite.sh                       # on the GPU machine
    bash benchmarks/gpu_suite.sh --dry-run --out /tmp/gpu.json
    bash benchmarks/gpu_suite.sh --robotseg-checkpoint robotseg.pt --sam3-model /models/sam3 --sd-model /models/sd-inpaint

Writes ``benchmarks/results/gpu_suite.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "gpu_suite.json"
SECTIONS = ("robotseg", "sam3", "diffusion", "pipeline")
#: Per-section time caps in seconds (GPU run). Together under the 8-minute budget.
DEFAULT_CAPS = {"robotseg": 200, "sam3": 80, "diffusion": 60, "pipeline": 120}
#: Dry run: only guards against a hang (2 shared, busy cores can be several times slower than idle ones).
DRY_CAPS = {"robotseg": 240, "sam3": 180, "diffusion": 180, "pipeline": 240}
#: A measurement is not started with less than this left of its section's cap.
MIN_SECONDS_TO_START = 5.0


def _oxe_augment() -> str:
    """The ``oxe-augment`` command beside this interpreter (the venv's), else on PATH."""
    beside = pathlib.Path(sys.executable).parent / "oxe-augment"
    return str(beside) if beside.exists() else (shutil.which("oxe-augment") or "oxe-augment")


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) < 2000 else text[:2000] + " ..."


class Section:
    """What one section measured so far; written to its file after every change."""

    def __init__(self, name: str, path: pathlib.Path, cap: float):
        self.name = name
        self.path = path
        self.deadline = time.monotonic() + cap
        self.data: dict = {"records": [], "errors": []}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)

    def attempt(self, setting: dict, measure) -> None:
        """Run ``measure()`` (returns a dict of figures) for ``setting``; record the figures or the error."""
        if self.left() < MIN_SECONDS_TO_START:
            self.data["errors"].append(
                {**setting, "error": f"not started: less than {MIN_SECONDS_TO_START:.0f} s left of the section's time cap"}
            )
            self.save()
            return
        start = time.monotonic()
        try:
            figures = measure()
        except Exception as error:  # noqa: BLE001 - every failure is a result here
            traceback.print_exc()
            self.data["errors"].append({**setting, "error": _error_text(error), "seconds": round(time.monotonic() - start, 2)})
        else:
            self.data["records"].append({**setting, **figures, "seconds_with_warmup": round(time.monotonic() - start, 2)})
        print(f"[{self.name}] {json.dumps((self.data['records'] + self.data['errors'])[-1])}", flush=True)
        self.save()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device) -> dict:
    import torch

    if device.type != "cuda":
        return {}
    return {"peak_cuda_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3)}


def _device(args):
    import torch

    if args.dry_run:
        torch.set_num_threads(1)  # tiny networks gain nothing from threads; on shared cores extra ones spin-wait
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device (use --dry-run for the CPU-sized check)")
    return torch.device("cuda")


# -- sections ----------------------------------------------------------------------------------


def section_environment(args) -> dict:
    """Versions and the device; never fails (missing pieces are recorded as such)."""
    env: dict = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    with contextlib.suppress(Exception):
        env["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    try:
        import torch

        env["torch"] = torch.__version__
        env["cuda_runtime"] = torch.version.cuda
        env["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env["gpu"] = torch.cuda.get_device_name(0)
            env["gpu_count"] = torch.cuda.device_count()
            env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
            env["gpu_capability"] = f"{props.major}.{props.minor}"
            env["cudnn"] = torch.backends.cudnn.version()
            env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
            env["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
        else:
            env["gpu"] = None
    except Exception as error:  # noqa: BLE001
        env["torch_error"] = _error_text(error)
    for package in ("transformers", "diffusers", "triton", "apache_beam"):
        try:
            from importlib.metadata import version

            env[package] = version(package.replace("_", "-"))
        except Exception:  # noqa: BLE001
            env[package] = None
    if shutil.which("nvidia-smi"):
        with contextlib.suppress(Exception):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
                check=False,
                capture_output=True,
                text=True,
                timeout=20,
            )
            env["nvidia_driver"] = out.stdout.strip().splitlines()[0].split(",")[0].strip()
    return env


def section_robotseg(args, section: Section) -> None:
    """RobotSeg frames/s: model sizes x (fp32, bf16) x (eager, compiled)."""
    import statistics

    import torch
    from torch._dynamo.utils import counters

    from segmentation.robotseg import InferenceOptions, build_robotseg_video_predictor, segment_video
    from segmentation.robotseg.build import compile_image_encoder, size_overrides
    from segmentation.robotseg.synthetic import render_synthetic_clip

    device = _device(args)
    base = "robotseg-tiny" if args.dry_run else "robotseg-infer"
    sizes = args.robotseg_sizes or ([64, 128] if args.dry_run else [512, 1024])
    frames_count = args.robotseg_frames or (4 if args.dry_run else 16)
    chunk = 2 if args.dry_run else 8
    repeats = 1 if args.dry_run else 2
    backend = args.compile_backend or ("eager" if args.dry_run else "inductor")
    frame_size = (48, 64) if args.dry_run else (480, 640)
    frames = render_synthetic_clip(frames_count, frame_size, seed=0).frames
    section.data.update(
        weights=args.robotseg_checkpoint or "random (torch.manual_seed(0))",
        config=f"{base} (segmentation/robotseg/configs) with image_size set per record",
        targets=["robot"],
        frames=frames_count,
        frame_size=list(frame_size),
        chunk_size=chunk,
        repeats=repeats,
        compile_backend=backend,
        device=str(device),
        mode="automatic (Robot Prompt Generator)",
    )
    section.save()

    # Eager settings first: they are quick, and a slow compile cannot cost their figures.
    plan = [(size, bf16, compiled) for compiled in (False, True) for size in sizes for bf16 in (False, True)]
    models: dict[int, object] = {}

    def model_at(size: int, compiled: bool):
        key = (size, compiled)
        if key not in models:
            model = build_robotseg_video_predictor(
                base, args.robotseg_checkpoint, device, hydra_overrides_extra=size_overrides(size)
            )
            if compiled:
                # What segmentation.compile: true does (the dry run: another backend, tracing
                # without code generation).
                compile_image_encoder(model, backend)
            models[key] = model
        return models[key]

    for size, bf16, compiled in plan:
        setting = {"image_size": size, "dtype": "bf16" if bf16 else "fp32", "compile": compiled}

        def measure(size=size, bf16=bf16, compiled=compiled):
            model = model_at(size, compiled)
            options = InferenceOptions(chunk_size=chunk, bf16=bf16)  # compiled models carry their compiled encoder
            start = time.perf_counter()
            for _ in range(2):  # warm-up (and compile); a second call shows any recompile outside the timing
                torch.manual_seed(0)
                segment_video(model, frames[: max(2, chunk)], targets=["robot"], options=options)
            _sync(device)
            warmup = time.perf_counter() - start
            _peak_reset(device)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                torch.manual_seed(0)
                labels = segment_video(model, frames, targets=["robot"], options=options)
                _sync(device)
                times.append(time.perf_counter() - start)
            assert labels.shape == frames.shape[:3], labels.shape
            median = statistics.median(times)
            return {
                "frames_per_second": round(frames_count / median, 3),
                "frames_per_second_best": round(frames_count / min(times), 3),
                "seconds_timed": [round(t, 3) for t in times],
                "warmup_seconds": round(warmup, 2),
                "bf16_effective": bf16 and device.type == "cuda",
                "dynamo_graphs_so_far": int(counters["stats"]["unique_graphs"]),
                **_peak_gib(device),
            }

        section.attempt(setting, measure)
    models.clear()


def tiny_sam3_folder(folder: pathlib.Path) -> pathlib.Path:
    """The tests' tiny random SAM 3 (model, processor, tokenizer) saved to ``folder``."""
    sys.path.insert(0, str(REPO))
    from tests.test_sam3_source import save_tiny_sam3

    return save_tiny_sam3(folder)


def full_size_sam3(device, dtype):
    """A real-size SAM 3 video model (``Sam3VideoConfig()``) with random weights, and its processor.

    The processor has the released model's sizes (1008 px input, 288 px masks, mean/std 0.5);
    the tokenizer is CLIP's byte-level BPE without merges (ids below the real vocabulary
    size, padded to the real context length): the text encoder's cost is that of the real one.
    """
    import torch
    from transformers import (
        CLIPTokenizer,
        Sam3ImageProcessor,
        Sam3VideoConfig,
        Sam3VideoModel,
        Sam3VideoProcessor,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    from segmentation.sam3_source import Sam3Video

    config = Sam3VideoConfig()
    # Random weights find a new "object" in almost every frame and never re-find one; cap the
    # tracks so the tracker's cost stays that of a scene with a few objects.
    config.max_num_objects = 8
    torch.manual_seed(0)
    with device:  # built on the GPU in float32, then cast, as load_model does with released weights
        model = Sam3VideoModel(config)
    model = model.to(device, dtype).eval()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in bytes_to_unicode().values():
            vocab[char + suffix] = len(vocab)
    image_size = config.detector_config.vision_config.backbone_config.image_size
    size = {"height": image_size, "width": image_size}
    processor = Sam3VideoProcessor(
        Sam3ImageProcessor(size=size, mask_size={"height": config.low_res_mask_size, "width": config.low_res_mask_size}),
        Sam2VideoVideoProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        CLIPTokenizer(vocab=vocab, merges=[]),
    )
    parameters = sum(p.numel() for p in model.parameters())
    return Sam3Video(model, processor, device, dtype), parameters


def section_sam3(args, section: Section) -> None:
    """SAM 3 video frames/s: one session per clip, four text prompts."""
    import torch

    from segmentation.robotseg.synthetic import render_synthetic_clip
    from segmentation.sam3_source import (
        DEFAULT_ROBOT_PROMPTS,
        Sam3MaskSource,
        Sam3Options,
    )

    device = _device(args)
    frames_count = args.sam3_frames or (4 if args.dry_run else 16)
    frame_size = (48, 56) if args.dry_run else (480, 640)
    frames = render_synthetic_clip(frames_count, frame_size, seed=0).frames
    prompts = list(DEFAULT_ROBOT_PROMPTS) + ["red cube", "bowl"]
    random_weights = not args.sam3_model
    # Random weights score detections about 0.25: threshold 0 gives the tracker work to do.
    thresholds = (0.0, 0.0) if random_weights else (0.5, 0.7)
    scratch = tempfile.mkdtemp(prefix="gpu-suite-sam3-")
    try:
        if args.dry_run and random_weights:
            folder = tiny_sam3_folder(pathlib.Path(scratch) / "tiny-sam3")
            weights, model_dir = "tiny random (tests/test_sam3_source.py save_tiny_sam3)", str(folder)
        else:
            weights, model_dir = (
                (args.sam3_model, args.sam3_model) if args.sam3_model else ("random, real size (Sam3VideoConfig())", None)
            )
        section.data.update(
            weights=weights,
            prompts=prompts,
            frames=frames_count,
            frame_size=list(frame_size),
            score_threshold=thresholds[0],
            new_object_threshold=thresholds[1],
            device=str(device),
        )
        section.save()
        holder: dict = {}

        def load():
            start = time.perf_counter()
            if model_dir is not None:
                options = Sam3Options(model=model_dir, device=str(device), bf16=True)
                source = Sam3MaskSource(options)
                source.check({}, [])
                holder["model"] = source.load_model()
                holder["parameters"] = sum(p.numel() for p in holder["model"].model.parameters())
            else:
                holder["model"], holder["parameters"] = full_size_sam3(device, torch.bfloat16)
            _sync(device)
            return {
                "load_seconds": round(time.perf_counter() - start, 2),
                "parameters": holder["parameters"],
                "dtype": str(holder["model"].dtype).replace("torch.", ""),
            }

        loaded: dict = {}

        def measure():
            loaded.update(load())
            model = holder["model"]
            start = time.perf_counter()
            model.segment_video(frames[:2], prompts, 64, *thresholds)  # warm-up
            _sync(device)
            warmup = time.perf_counter() - start
            _peak_reset(device)
            start = time.perf_counter()
            found = model.segment_video(frames, prompts, 64, *thresholds)
            _sync(device)
            seconds = time.perf_counter() - start
            assert set(found) == set(prompts) and all(m.shape == frames.shape[:3] for m in found.values())
            return {
                **loaded,
                "frames_per_second": round(frames_count / seconds, 3),
                "seconds_timed": round(seconds, 3),
                "warmup_seconds": round(warmup, 2),
                "pixels_found": {p: int(m.sum()) for p, m in found.items()},
                **_peak_gib(device),
            }

        section.attempt({"setting": "video, one session, all prompts"}, measure)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def section_diffusion(args, section: Section) -> None:
    """Diffusion backgrounds per second through ``DiffusionInpaintBackground.generate_batch``."""

    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests")]
    import diffusion_speed

    from backgrounds.diffusion import (
        PIPELINE_KINDS,
        DiffusionInpaintBackground,
        DiffusionOptions,
    )

    device = _device(args)
    resolution = args.diffusion_resolution or (64 if args.dry_run else 512)
    steps = args.diffusion_steps or (2 if args.dry_run else 30)
    images = args.diffusion_images or (2 if args.dry_run else 6)
    scratch = tempfile.mkdtemp(prefix="gpu-suite-diffusion-")
    try:
        if args.sd_model:
            weights, folder = args.sd_model, args.sd_model
        elif args.dry_run:
            from tiny_inpaint_pipeline import save_tiny_sd_inpaint

            folder = str(save_tiny_sd_inpaint(pathlib.Path(scratch) / "sd"))
            weights = "tiny random (tests/tiny_inpaint_pipeline.py save_tiny_sd_inpaint)"
        else:
            weights, folder = "random init, full size (SD 1.5 inpainting UNet 859 M, VAE, CLIP ViT-L text encoder)", None
        section.data.update(weights=weights, pipeline="sd", steps=steps, resolution=resolution, images=images, device=str(device))
        section.save()

        def measure():
            options = DiffusionOptions(
                model=folder or "<random sd>", pipeline="sd", steps=steps, device=device.type, resolution=resolution
            )
            source = DiffusionInpaintBackground(options)
            start = time.perf_counter()
            if folder:
                source.check()
                model = source.load_model()
            else:
                model = diffusion_speed.full_size_pipeline("sd", device, PIPELINE_KINDS["sd"].half_dtype, pathlib.Path(scratch))
            load = time.perf_counter() - start
            result = diffusion_speed.measure(source, model, resolution, images)
            return {
                "backgrounds_per_second": result["images_per_second"],
                "seconds_timed": result["seconds"],
                "load_seconds": round(load, 2),
                "dtype": str(model.dtype).replace("torch.", ""),
                **({"peak_cuda_memory_gib": result["peak_memory_gib"]} if "peak_memory_gib" in result else {}),
            }

        section.attempt({"setting": f"sd inpaint, {resolution} px, {steps} steps, one image per call"}, measure)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def section_pipeline(args, section: Section) -> None:
    """``oxe-augment sample-data`` then ``oxe-augment run configs/segment_robotseg.yaml`` with RobotSeg on the device."""
    episodes = args.pipeline_episodes or (2 if args.dry_run else 8)
    steps = args.pipeline_steps or (4 if args.dry_run else 16)
    size = args.pipeline_size or (32 if args.dry_run else 128)
    workers = args.pipeline_workers or 1
    device = "cpu" if args.dry_run else "cuda"
    config = "tiny" if args.dry_run else "robotseg_hiera_t"
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="gpu-suite-pipeline-"))
    cli = _oxe_augment()
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    if args.dry_run:  # tiny networks on shared cores: more threads only spin
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    section.data.update(
        recipe="configs/segment_robotseg.yaml",
        robotseg_config=config,
        device=device,
        runner_workers=workers,
        weights=args.robotseg_checkpoint or "random (segmentation.allow_random_init: true)",
        sample_data={"episodes": episodes, "steps": steps, "size": size, "cameras": 2},
    )
    section.save()

    def run(command: list[str]) -> subprocess.CompletedProcess:
        print(f"[pipeline] $ {' '.join(command)}", flush=True)
        done = subprocess.run(
            command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(1.0, section.left())
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[1:3])} exited {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
        return done

    def measure():
        data = scratch / "sample" / "oxe_augment_sample" / "1.0.0"
        start = time.perf_counter()
        run([cli, "sample-data", str(data), "--episodes", str(episodes), "--steps", str(steps), "--size", str(size)])
        sample_seconds = time.perf_counter() - start
        out = scratch / "out"
        command = [
            cli,
            "run",
            "configs/segment_robotseg.yaml",
            "--set",
            f"input.dir={data}",
            "--set",
            f"output.dir={out}",
            "--set",
            f"segmentation.config={config}",
            "--set",
            f"segmentation.device={device}",
            "--set",
            f"runner.workers={workers}",
        ]
        if args.robotseg_checkpoint:
            command += ["--set", f"segmentation.checkpoint={os.path.abspath(args.robotseg_checkpoint)}"]
        else:
            command += ["--set", "segmentation.checkpoint=null", "--set", "segmentation.allow_random_init=true"]
        start = time.perf_counter()
        run(command)
        run_seconds = time.perf_counter() - start
        report = json.loads((out / "report.json").read_text())
        if report["episodes_written"] != episodes or report["episodes_failed"]:
            raise RuntimeError(f"episodes written {report['episodes_written']} of {episodes}, failed {report['episodes_failed']}")
        segment = report["seconds_per_stage"].get("segment", 0.0)
        return {
            "frames": report["frames"],
            "frames_per_second": report["frames_per_second"],
            "report_wall_seconds": report["wall_seconds"],
            "segment_seconds": segment,
            "segment_frames_per_second": round(report["frames"] / segment, 3) if segment > 0 else None,
            "seconds_per_stage": report["seconds_per_stage"],
            "command_seconds": round(run_seconds, 2),
            "sample_data_seconds": round(sample_seconds, 2),
            "episodes_written": report["episodes_written"],
        }

    try:
        section.attempt({"setting": f"segment_robotseg.yaml, RobotSeg {config} on {device}"}, measure)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


SECTION_FUNCTIONS = {
    "robotseg": section_robotseg,
    "sam3": section_sam3,
    "diffusion": section_diffusion,
    "pipeline": section_pipeline,
}


# -- the driver ---------------------------------------------------------------------------------


def run_section_here(args) -> int:
    """Child process: run one section, writing its progress to ``--section-file``."""
    import pipelines  # noqa: F401  (triton before TensorFlow: see pipelines/__init__.py)

    section = Section(args.section, pathlib.Path(args.section_file), args.section_cap)
    section.save()
    try:
        SECTION_FUNCTIONS[args.section](args, section)
    except Exception as error:  # noqa: BLE001 - before or between measurements: recorded, not raised
        traceback.print_exc()
        section.data["errors"].append({"error": _error_text(error)})
        section.save()
        return 1
    return 0


def run_section_child(name: str, args, argv: list[str], cap: float, scratch: pathlib.Path) -> dict:
    """Run section ``name`` in a child process limited to ``cap`` seconds; its figures and errors."""
    path = scratch / f"{name}.json"
    command = [
        sys.executable,
        str(pathlib.Path(__file__).resolve()),
        *argv,
        "--section",
        name,
        "--section-file",
        str(path),
        "--section-cap",
        str(cap),
    ]
    log = scratch / f"{name}.log"
    start = time.monotonic()
    status = "ok"
    with open(log, "w") as output:
        child = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = child.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)  # the section and what it started (oxe-augment runs)
            child.wait()
            returncode, status = None, "timeout"
    seconds = time.monotonic() - start
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {"records": [], "errors": []}
    if status == "timeout":
        data["errors"].append(
            {"error": f"time cap of {cap:.0f} s reached; the section was stopped (figures above were measured before)"}
        )
    elif returncode != 0 and not data["errors"]:  # it died without saying why: its output's end
        status = "error"
        tail = log.read_text(errors="replace")[-2000:]
        data["errors"].append({"error": f"section process exited {returncode}", "log_tail": tail})
    if status == "ok" and data["errors"]:
        status = "partial" if data["records"] else "error"
    if status == "ok" and not data["records"]:
        status = "error"
        data["errors"].append({"error": "no measurement recorded"})
    if status != "ok":
        print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
    return {"status": status, "seconds": round(seconds, 1), "time_cap_seconds": round(cap, 1), **data}


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=pathlib.Path, default=DEFAULT_OUT, help=f"the JSON file (default {DEFAULT_OUT.relative_to(REPO)})"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny models and data: checks the suite, measures nothing real"
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--total-seconds", type=float, default=None, help="cap on the whole suite (default 470; dry run 840)")
    for name in SECTIONS:
        parser.add_argument(
            f"--cap-{name}",
            type=float,
            default=None,
            help=f"seconds for {name} (default {DEFAULT_CAPS[name]}; dry run {DRY_CAPS[name]})",
        )
    parser.add_argument("--robotseg-checkpoint", help="robotseg.pt; default: random weights")
    parser.add_argument("--robotseg-sizes", type=int, nargs="+", help="model input sizes (default 512 1024; dry run 64 128)")
    parser.add_argument("--robotseg-frames", type=int, help="frames per timed clip (default 16; dry run 4)")
    parser.add_argument("--compile-backend", help="torch.compile backend (default inductor; dry run eager)")
    parser.add_argument("--sam3-model", help="a SAM 3 save_pretrained folder; default: random weights of the real size")
    parser.add_argument("--sam3-frames", type=int, help="frames per timed clip (default 16; dry run 4)")
    parser.add_argument("--sd-model", help="an SD inpainting pipeline folder; default: a random full-size one")
    parser.add_argument("--diffusion-resolution", type=int, help="default 512; dry run 64")
    parser.add_argument("--diffusion-steps", type=int, help="denoising steps (default 30; dry run 2)")
    parser.add_argument("--diffusion-images", type=int, help="timed backgrounds (default 6; dry run 2)")
    parser.add_argument("--pipeline-episodes", type=int, help="sample episodes (default 8; dry run 2)")
    parser.add_argument("--pipeline-steps", type=int, help="steps per sample episode (default 16; dry run 4)")
    parser.add_argument("--pipeline-size", type=int, help="sample image size (default 128; dry run 32)")
    parser.add_argument("--pipeline-workers", type=int, help="runner.workers (default 1: one process, one model on the GPU)")
    # internal: one section in this process
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--section-file", help=argparse.SUPPRESS)
    parser.add_argument("--section-cap", type=float, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.section:
        return run_section_here(args)

    started = time.monotonic()
    caps = DRY_CAPS if args.dry_run else DEFAULT_CAPS
    total = args.total_seconds or (840.0 if args.dry_run else 470.0)
    result: dict = {
        "suite": "gpu_suite",
        "dry_run": args.dry_run,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["benchmarks/gpu_suite.sh", *argv]),
        "total_cap_seconds": total,
        "environment": section_environment(args),
    }
    # Children get the suite's own options (not --out), and run one section each.
    child_argv = [a for a in argv]
    with contextlib.suppress(ValueError):
        i = child_argv.index("--out")
        del child_argv[i : i + 2]
    child_argv = [a for a in child_argv if not a.startswith("--out=")]
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    try:
        for name in SECTIONS:
            if name not in args.sections:
                continue
            left = total - (time.monotonic() - started)
            cap = min(getattr(args, f"cap_{name}") or caps[name], left)
            if cap < 10:
                result[name] = {
                    "status": "skipped",
                    "records": [],
                    "errors": [{"error": f"the suite's total cap of {total:.0f} s was used up"}],
                }
            else:
                print(f"== {name} (cap {cap:.0f} s)", flush=True)
                result[name] = run_section_child(name, args, child_argv, cap, scratch)
                print(f"== {name}: {result[name]['status']} in {result[name]['seconds']} s", flush=True)
            _write(args.out, result, started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _write(args.out, result, started)
    print(f"wrote {args.out}")
    failed = [n for n in SECTIONS if n in result and result[n]["status"] != "ok"]
    if failed:
        print(f"sections with errors: {', '.join(failed)} (see the JSON)", file=sys.stderr)
    return 1 if failed else 0


def _write(out: pathlib.Path, result: dict, started: float) -> None:
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    result["errors"] = {name: result[name]["errors"] for name in SECTIONS if name in result and result[name]["errors"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    raise SystemExit(main())

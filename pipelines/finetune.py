"""The ``finetune`` command: label-efficient fine-tuning of RobotSeg (``segmentation.robotseg.let``).

Training data is a VRS split (``image/<video>/<frame>.jpg`` and
``mask_gt/<video>/<000|001|002>/<frame>.png``; frames with a mask file are labelled)
or an RLDS dataset with ``steps/observation/<camera>_robot_mask`` features (each camera
clip of each episode is one video, every frame labelled). ``--label-every`` then keeps
the first labelled frame of each clip only (0, the default) or every k-th one.

Writes ``<out>/last.pt`` (model, optimizer, step: the run resumes from it) and, at the
end, ``<out>/robotseg_finetuned.pt``, which ``build_robotseg``, ``eval --protocol robotseg`` and
recipes (``segmentation.checkpoint``) load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pathlib
import sys

import numpy as np

from segmentation.labels import TARGETS, mask_feature_name, target_mask

EXIT_CONFIG = 2

# The defaults of segmentation.robotseg.let.FinetuneOptions / PatchPropagation, repeated
# here so that building the CLI parser does not import torch; a test checks they agree.
_DEFAULTS = argparse.Namespace(
    config="tiny",
    target="robot",
    steps=1000,
    batch_size=2,
    clip_length=4,
    label_every=0,
    lr=1e-4,
    weight_decay=0.01,
    cycle_weight=1.0,
    semantic_weight=1.0,
    patch_weight=1.0,
    patch_backbone="self",
    seed=0,
    save_every=200,
    log_every=20,
)
_PATCH_DEFAULTS = argparse.Namespace(context=7, radius=12, top_k=5, temperature=0.2, confidence=0.5)
PATCH_BACKBONE_NAMES = ("self", "self_stride8", "transformers")


class FinetuneInputError(ValueError):
    """Training data or options cannot be used (the message names the path or option)."""


def read_rlds_clips(
    path: pathlib.Path, split: str, cameras: list[str] | None, target: str, max_episodes: int | None = None
) -> list:
    """Training clips from an RLDS dataset with mask features: one per (episode, camera), every frame labelled."""
    import tensorflow_datasets as tfds

    from pipelines.rlds_io import episode_key
    from segmentation.robotseg.let import TrainClip

    builder = tfds.builder_from_directory(str(path))
    if split not in builder.info.splits:
        raise FinetuneInputError(f"{path}: no split {split!r} (splits: {sorted(builder.info.splits)})")
    observation = builder.info.features["steps"]["observation"]
    with_masks = [name for name in observation.keys() if mask_feature_name(name) in observation.keys()]
    chosen = cameras or with_masks
    missing = [c for c in chosen if c not in with_masks]
    if not chosen or missing:
        raise FinetuneInputError(
            f"{path}: no mask feature (steps/observation/<camera>_robot_mask) for cameras {missing or chosen or 'any'}"
        )
    clips = []
    for index, episode in enumerate(tfds.as_numpy(builder.as_dataset(split, shuffle_files=False))):
        if max_episodes is not None and index >= max_episodes:
            break
        steps = list(episode["steps"])
        for camera in chosen:
            frames = np.stack([s["observation"][camera] for s in steps])
            labels = np.stack([s["observation"][mask_feature_name(camera)][..., 0] for s in steps])
            clips.append(
                TrainClip(
                    f"{episode_key(split, index)}/{camera}", frames, target_mask(labels, target), np.ones(len(frames), bool)
                )
            )
    if not clips:
        raise FinetuneInputError(f"{path}: split {split!r} has no episodes")
    return clips


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` subcommand (without importing torch: every CLI start builds this parser)."""
    d, p = _DEFAULTS, _PATCH_DEFAULTS
    parser = subparsers.add_parser(
        "finetune",
        help="label-efficient fine-tuning of RobotSeg (first-frame labels + cycle/semantic/patch consistency)",
        description=(
            "Train RobotSeg on VRS folders or an RLDS dataset with mask features, with ground truth on the first frame "
            "of each clip (or every k-th) and RobotSeg's label-efficient losses: cycle consistency (forward, then "
            "backward to frame 0, against the first-frame mask), semantic consistency (masked features of every frame "
            "toward the first frame's), patch consistency (pseudo-masks propagated by a frozen backbone's patch "
            "similarity), plus the supervised loss on labelled frames. Writes OUT/last.pt (resumed from when present) "
            "and OUT/robotseg_finetuned.pt (the release's format and key names; never named robotseg.pt), loadable by recipes (segmentation.checkpoint) and `eval --protocol robotseg`."
        ),
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        required=True,
        help="a VRS split folder (image/, mask_gt/) or an RLDS version folder with <camera>_robot_mask features",
    )
    data.add_argument("--split", default="train", help="RLDS split (default train)")
    data.add_argument("--cameras", nargs="+", metavar="CAMERA", help="RLDS cameras (default: every camera with masks)")
    data.add_argument("--max-episodes", type=int, help="RLDS: read at most this many episodes")
    data.add_argument("--target", choices=TARGETS, default=d.target, help=f"what to segment (default {d.target})")
    data.add_argument(
        "--label-every",
        type=int,
        default=d.label_every,
        metavar="K",
        help="ground truth kept on the first labelled frame of each clip (0, default) or on every K-th frame (1 = all: fully supervised)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--out", required=True, help="output folder for last.pt and robotseg_finetuned.pt")
    model.add_argument("--config", default=d.config, help=f"RobotSeg config: robotseg_hiera_t or tiny (default {d.config})")
    model.add_argument(
        "--init",
        dest="init_checkpoint",
        help="start from this checkpoint: RobotSeg (robotseg.pt) or SAM 2.1 (sam2.1_hiera_tiny.pt: fills the SAM 2 part); default: random init",
    )
    model.add_argument(
        "--freeze",
        nargs="+",
        default=[],
        metavar="PREFIX",
        help="parameter-name prefixes to keep frozen, e.g. image_encoder, image_encoder.trunk, sam_prompt_encoder, memory_encoder",
    )
    model.add_argument("--no-resume", dest="resume", action="store_false", help="start over even if OUT/last.pt exists")
    train = parser.add_argument_group("training")
    train.add_argument(
        "--steps",
        type=int,
        default=d.steps,
        help=f"optimisation steps in all (default {d.steps}); a resumed run continues to this number",
    )
    train.add_argument("--batch-size", type=int, default=d.batch_size, help=f"clips per step (default {d.batch_size})")
    train.add_argument(
        "--clip-length",
        type=int,
        default=d.clip_length,
        help=f"frames per training clip, starting on a labelled frame (default {d.clip_length})",
    )
    train.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr})")
    train.add_argument(
        "--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay (default {d.weight_decay})"
    )
    train.add_argument("--bf16", action="store_true", help="bf16 autocast (meant for GPUs; slow on CPUs)")
    train.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    train.add_argument("--seed", type=int, default=d.seed, help="seed of the initialisation and of the clip sampling")
    train.add_argument(
        "--save-every", type=int, default=d.save_every, help=f"write OUT/last.pt every this many steps (default {d.save_every})"
    )
    train.add_argument(
        "--log-every", type=int, default=d.log_every, help=f"log the loss terms every this many steps (default {d.log_every})"
    )
    let = parser.add_argument_group("label-efficient losses")
    let.add_argument(
        "--no-let", dest="let", action="store_false", help="supervised loss on labelled frames only (no consistency losses)"
    )
    let.add_argument(
        "--cycle-weight", type=float, default=d.cycle_weight, help=f"cycle consistency weight (default {d.cycle_weight})"
    )
    let.add_argument(
        "--semantic-weight",
        type=float,
        default=d.semantic_weight,
        help=f"semantic consistency weight (default {d.semantic_weight})",
    )
    let.add_argument(
        "--patch-weight", type=float, default=d.patch_weight, help=f"patch consistency weight (default {d.patch_weight})"
    )
    let.add_argument(
        "--patch-backbone",
        choices=PATCH_BACKBONE_NAMES,
        default=d.patch_backbone,
        help="frozen backbone of patch consistency: self (a frozen copy of the model's image encoder at the start, "
        "stride 16), self_stride8 (its stride-8 level: finer, for small models) or transformers (a local "
        "DINOv2/DINOv3 folder, --patch-backbone-path)",
    )
    let.add_argument("--patch-backbone-path", help="local Hugging Face model folder for --patch-backbone transformers")
    let.add_argument(
        "--patch-context", type=int, default=p.context, help=f"frames a pseudo-mask is propagated from (default {p.context})"
    )
    let.add_argument("--patch-radius", type=int, default=p.radius, help=f"neighbourhood radius in patches (default {p.radius})")
    let.add_argument("--patch-top-k", type=int, default=p.top_k, help=f"most similar patches averaged (default {p.top_k})")
    let.add_argument(
        "--patch-temperature",
        type=float,
        default=p.temperature,
        help=f"softmax temperature of the similarities (default {p.temperature})",
    )
    let.add_argument(
        "--patch-confidence",
        type=float,
        default=p.confidence,
        help=f"pseudo-mask pixels with |2P - 1| below this are ignored (default {p.confidence}; 0 uses soft pseudo-masks everywhere)",
    )
    parser.set_defaults(handler=run_finetune)


def options_from_args(args: argparse.Namespace):
    """The :class:`FinetuneOptions` of parsed arguments; raises :class:`FinetuneInputError` naming a bad option."""
    from segmentation.robotseg.build import CONFIGS
    from segmentation.robotseg.let import FinetuneOptions, PatchPropagation

    if args.config not in CONFIGS:
        raise FinetuneInputError(f"--config: unknown RobotSeg config {args.config!r}; known: {', '.join(sorted(CONFIGS))}")
    for name in ("steps", "batch_size", "clip_length"):
        if getattr(args, name) < 1:
            raise FinetuneInputError(f"--{name.replace('_', '-')}: must be >= 1")
    if args.init_checkpoint and not pathlib.Path(args.init_checkpoint).is_file():
        raise FinetuneInputError(f"--init: {args.init_checkpoint}: no such file")
    if args.patch_backbone == "transformers" and args.let and not args.patch_backbone_path:
        raise FinetuneInputError("--patch-backbone-path: required with --patch-backbone transformers")
    from segmentation.robotseg.source import resolve_device

    try:
        device = str(resolve_device(args.device))
    except RuntimeError as error:
        raise FinetuneInputError(f"--device: {error}") from None
    return FinetuneOptions(
        out_dir=args.out,
        config=args.config,
        init_checkpoint=args.init_checkpoint,
        target=args.target,
        steps=args.steps,
        batch_size=args.batch_size,
        clip_length=args.clip_length,
        label_every=args.label_every,
        lr=args.lr,
        weight_decay=args.weight_decay,
        let=args.let,
        cycle_weight=args.cycle_weight,
        semantic_weight=args.semantic_weight,
        patch_weight=args.patch_weight,
        patch_backbone=args.patch_backbone,
        patch_backbone_path=args.patch_backbone_path,
        patch=PatchPropagation(
            args.patch_context, args.patch_radius, args.patch_top_k, args.patch_temperature, args.patch_confidence
        ),
        freeze=tuple(args.freeze),
        bf16=args.bf16,
        device=device,
        seed=args.seed,
        save_every=args.save_every,
        log_every=args.log_every,
        resume=args.resume,
    )


def load_clips(args: argparse.Namespace) -> list:
    """Training clips of ``--data`` (VRS split or RLDS dataset)."""
    from segmentation.robotseg.let import load_vrs_clips

    path = pathlib.Path(args.data)
    if not path.exists():
        raise FinetuneInputError(f"--data: {path}: no such folder")
    if (path / "dataset_info.json").is_file():
        cameras = [c for arg in args.cameras or () for c in arg.split(",") if c] or None
        return read_rlds_clips(path, args.split, cameras, args.target, args.max_episodes)
    try:
        return load_vrs_clips(path, args.target)
    except ValueError as error:
        raise FinetuneInputError(f"--data: {error}") from None


def run_finetune(args: argparse.Namespace) -> int:
    """Handler of ``finetune``: check the options and data, train, say where the checkpoint is. Exit 2 on bad inputs."""
    logging.getLogger("segmentation.robotseg.let").setLevel(logging.INFO)
    try:
        options = options_from_args(args)
        clips = load_clips(args)
        short = [c.name for c in clips if len(c.frames) < options.clip_length]
        if len(short) == len(clips):
            raise FinetuneInputError(
                f"--clip-length {options.clip_length}: longer than every clip (e.g. {short[0]}: {len(clips[0].frames)} frames)"
            )
        clips = [c for c in clips if len(c.frames) >= options.clip_length]
    except FinetuneInputError as error:
        print(f"finetune: {error}", file=sys.stderr)
        return EXIT_CONFIG
    from segmentation.robotseg.let import finetune

    print(
        f"finetune: {len(clips)} clips from {args.data}; {options.steps} steps, {'LET' if options.let else 'labelled frames only'}"
    )
    try:
        result = finetune(options, clips)
    except ValueError as error:  # e.g. a clip without a labelled frame early enough, a --freeze prefix naming nothing
        print(f"finetune: {error}", file=sys.stderr)
        return EXIT_CONFIG
    last = result["history"][-1] if result["history"] else {}
    print(
        f"finetune: wrote {result['checkpoint']} ({result['seconds_per_step']:.3f} s/step); last losses {json.dumps({k: round(v, 4) for k, v in last.items() if isinstance(v, float)})}"
    )
    (pathlib.Path(options.out_dir) / "finetune.json").write_text(
        json.dumps({"options": dataclasses.asdict(options), **result}, indent=2) + "\n"
    )
    return 0

"""RobotSeg: SAM 2.1 Hiera-T with SEMA memory attention and the Robot Prompt Generator.

Entry points: :func:`build_robotseg` (the model, optionally from a checkpoint),
:func:`segment_video` (label maps for an in-memory clip) and, for recipes,
``segmentation.robotseg.source.RobotSegMaskSource``. The model is described in
"RobotSeg: A Model and Dataset for Segmenting Robots in Image and Video" (arXiv 2511.22950).
"""

from segmentation.robotseg.checkpoint import CheckpointError, CheckpointReport, load_checkpoint, save_checkpoint
from segmentation.robotseg.config import RobotSegConfig, robotseg_config, tiny_config
from segmentation.robotseg.model import RobotSeg, build_robotseg
from segmentation.robotseg.prompts import FramePrompt, PromptFile, load_prompt_file
from segmentation.robotseg.video import InferenceOptions, segment_video

__all__ = [
    "CheckpointError",
    "CheckpointReport",
    "FramePrompt",
    "InferenceOptions",
    "PromptFile",
    "RobotSeg",
    "RobotSegConfig",
    "build_robotseg",
    "load_checkpoint",
    "load_prompt_file",
    "robotseg_config",
    "save_checkpoint",
    "segment_video",
    "tiny_config",
]

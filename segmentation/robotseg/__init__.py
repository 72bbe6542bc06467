"""RobotSeg: SAM 2.1 Hiera-T with SEMA memory attention and the Robot Prompt Generator.

Entry points: :func:`build_robotseg` (the model, optionally from a checkpoint),
:func:`segment_video` (label maps for an in-memory clip), the release's video API
:func:`build_robotseg_video_predictor` (``init_state``, ``add_new_robot``,
``add_new_points_or_box``, ``propagate_in_video``) and, for recipes,
``segmentation.robotseg.source.RobotSegMaskSource``; all run one video engine
(``segmentation.robotseg.video.iter_logits``). Label-efficient fine-tuning is in
``segmentation.robotseg.let``. The model is described in
"RobotSeg: A Model and Dataset for Segmenting Robots in Image and Video" (arXiv 2511.22950).
"""

from segmentation.robotseg.checkpoint import CheckpointError, CheckpointReport, load_checkpoint, save_checkpoint
from segmentation.robotseg.config import RobotSegConfig, robotseg_config, tiny_config
from segmentation.robotseg.model import RobotSeg, build_robotseg
from segmentation.robotseg.predictor import RobotSegVideoPredictor, build_robotseg_video_predictor
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
    "RobotSegVideoPredictor",
    "build_robotseg",
    "build_robotseg_video_predictor",
    "load_checkpoint",
    "load_prompt_file",
    "robotseg_config",
    "save_checkpoint",
    "segment_video",
    "tiny_config",
]

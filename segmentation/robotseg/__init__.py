"""RobotSeg: SAM 2.1 Hiera-T with structure-enhanced memory attention and the Robot Prompt Generator.

Our implementation of the released model ("RobotSeg: A Model and Dataset for Segmenting
Robots in Image and Video", arXiv 2511.22950; code in the release's ``robotseg`` package),
built on the ``sam2`` package: the release's module names (its ``robotseg.pt`` loads
strictly), computation and video API. Entry points: :func:`build_robotseg_video_predictor`
(the release's API: ``init_state``, ``add_new_robot``, ``add_new_points_or_box``,
``propagate_in_video``...), :func:`segment_video` (label maps for an in-memory clip, on the
same predictor) and, for recipes, ``segmentation.robotseg.source.RobotSegMaskSource``.
"""

from segmentation.robotseg.build import CONFIGS, build_robotseg, build_robotseg_video_predictor
from segmentation.robotseg.checkpoint import CheckpointError, CheckpointReport, load_checkpoint, save_checkpoint
from segmentation.robotseg.model import RobotSegBase
from segmentation.robotseg.predictor import RobotSegVideoPredictor
from segmentation.robotseg.prompts import FramePrompt
from segmentation.robotseg.video import InferenceOptions, segment_video

__all__ = [
    "CONFIGS",
    "CheckpointError",
    "CheckpointReport",
    "FramePrompt",
    "InferenceOptions",
    "RobotSegBase",
    "RobotSegVideoPredictor",
    "build_robotseg",
    "build_robotseg_video_predictor",
    "load_checkpoint",
    "save_checkpoint",
    "segment_video",
]

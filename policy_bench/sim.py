"""The pybullet tabletop: a Franka Panda, a table, a backdrop, one fixed RGB camera.

The arm is driven by end-effector actions at :data:`CONTROL_HZ`: an action is a change of
the finger-tip position (metres, clipped to :data:`MAX_STEP` per axis) and a gripper
command (1 open, 0 closed); inverse kinematics turns the target into joint targets for
the position motors, and physics runs :data:`SUBSTEPS` steps per action, so objects are
pushed and grasped by contact. Every frame comes with exact label maps from pybullet's
segmentation buffer, in the project's convention (``segmentation.labels``).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import tempfile

import numpy as np
import pybullet
import pybullet_data

from policy_bench.scenes import Scene, look_file
from segmentation.labels import ARM, BODY, GRIPPER

CONTROL_HZ = 10
SUBSTEPS = 24  # 240 Hz physics
MAX_STEP = 0.03  # metres per action per axis
CAMERA = "image"
#: Proprioception: finger-tip xyz (m) and gripper opening (1 open, 0 closed).
PROPRIO_SIZE = 4
#: Action: finger-tip delta xyz (m) and gripper command (1 open, 0 closed).
ACTION_SIZE = 4

WORKSPACE_LOW = np.array([0.3, -0.3, 0.0])
WORKSPACE_HIGH = np.array([0.75, 0.3, 0.35])
HOME = np.array([0.45, 0.0, 0.25])

_ARM_JOINTS = (0, 1, 2, 3, 4, 5, 6)
_FINGER_JOINTS = (9, 10)
_EE_LINK = 11  # panda_grasptarget, between the finger tips
_REST = (0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8)
# Tool pointing down, fingers opening along x (across the push direction, y).
_DOWN = pybullet.getQuaternionFromEuler((math.pi, 0.0, math.pi / 2))
_ARM_LINKS, _GRIPPER_LINKS = (0, 1, 2, 3, 4, 5, 6, 7), (8, 9, 10, 11)
_LINK_SHIFT = 24  # pybullet packs a segmentation pixel as body + ((link + 1) << 24)

#: Distractor objects (pybullet_data asset, scale, where on the table). Unseen in training.
DISTRACTORS = {
    "duck": ("duck_vhacd.urdf", 1.0, (0.68, 0.22)),
    "ball": ("sphere_small.urdf", 1.2, (0.34, -0.24)),
    "lego": ("lego/lego.urdf", 2.5, (0.70, -0.22)),
}


@dataclasses.dataclass
class Observation:
    """What the policy sees (image, proprio) and what the dataset stores besides (masks)."""

    image: np.ndarray  # (H, W, 3) uint8
    robot_mask: np.ndarray  # (H, W) uint8, segmentation.labels
    object_mask: np.ndarray  # (H, W) uint8, 0 none, k = task object k
    proprio: np.ndarray  # (PROPRIO_SIZE,) float32


class TabletopEnv:
    """One pybullet world showing ``scene``; tasks place their objects with :meth:`add_object`."""

    def __init__(self, scene: Scene, size: int = 64, cache_dir: str | pathlib.Path | None = None, render: bool = True):
        self.scene, self.size = scene, size
        self.render = render  # False: observations carry proprioception only (fast expert checks)
        self._cache = pathlib.Path(cache_dir or tempfile.gettempdir()) / "policy-bench-textures"
        self.client = pybullet.connect(pybullet.DIRECT)
        c = self.client
        pybullet.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        pybullet.setGravity(0, 0, -9.81, physicsClientId=c)
        pybullet.setTimeStep(1.0 / (CONTROL_HZ * SUBSTEPS), physicsClientId=c)
        self._build_static()
        self.robot = pybullet.loadURDF("franka_panda/panda.urdf", useFixedBase=True, physicsClientId=c)
        for finger in _FINGER_JOINTS:
            pybullet.changeDynamics(self.robot, finger, lateralFriction=2.0, physicsClientId=c)
        self._link_labels = np.full(pybullet.getNumJoints(self.robot, physicsClientId=c) + 1, BODY, np.uint8)
        self._link_labels[np.asarray(_ARM_LINKS) + 1] = ARM
        self._link_labels[np.asarray(_GRIPPER_LINKS) + 1] = GRIPPER
        self._bodies: list[int] = []  # task objects (object k = index k-1) and distractors
        self.task_objects: list[int] = []
        self._camera = self._camera_matrices()
        self._noise = np.random.default_rng(0)
        self.target = HOME.copy()
        self.gripper = 1.0

    # -- world -----------------------------------------------------------------------

    def _build_static(self) -> None:
        c = self.client
        table_half = (0.35, 0.5, 0.02)
        table = pybullet.createMultiBody(
            0,
            pybullet.createCollisionShape(pybullet.GEOM_BOX, halfExtents=table_half, physicsClientId=c),
            pybullet.createVisualShape(pybullet.GEOM_BOX, halfExtents=table_half, physicsClientId=c),
            basePosition=(0.5, 0.0, -table_half[2]),
            physicsClientId=c,
        )
        wall_half = (0.01, 1.6, 1.0)
        wall = pybullet.createMultiBody(
            0,
            -1,
            pybullet.createVisualShape(pybullet.GEOM_BOX, halfExtents=wall_half, physicsClientId=c),
            basePosition=(-0.45, 0.0, 0.4),
            physicsClientId=c,
        )
        floor_half = (1.5, 1.6, 0.01)
        floor = pybullet.createMultiBody(
            0,
            -1,
            pybullet.createVisualShape(pybullet.GEOM_BOX, halfExtents=floor_half, physicsClientId=c),
            basePosition=(0.6, 0.0, -0.65),
            physicsClientId=c,
        )
        for body, look in ((table, self.scene.table), (wall, self.scene.backdrop), (floor, self.scene.backdrop)):
            texture = pybullet.loadTexture(str(look_file(look, self._cache)), physicsClientId=c)
            pybullet.changeVisualShape(body, -1, textureUniqueId=texture, rgbaColor=(1, 1, 1, 1), physicsClientId=c)

    def _camera_matrices(self) -> tuple[list[float], list[float]]:
        offset = np.asarray(self.scene.camera_offset)
        eye = np.array([1.05, 0.0, 0.42]) + offset
        target = np.array([0.4, 0.0, 0.08]) + offset
        view = pybullet.computeViewMatrix(eye.tolist(), target.tolist(), [0, 0, 1])
        projection = pybullet.computeProjectionMatrixFOV(45, 1.0, 0.05, 5.0)
        return list(view), list(projection)

    def add_object(self, asset: str, position, yaw: float = 0.0, scale: float = 1.0, rgba=None, task_object: bool = True) -> int:
        """Load an object standing on the table at ``position`` (x, y); task objects get mask ids."""
        c = self.client
        orientation = pybullet.getQuaternionFromEuler((0, 0, yaw))
        body = pybullet.loadURDF(asset, (position[0], position[1], 0.2), orientation, globalScaling=scale, physicsClientId=c)
        bottom = pybullet.getAABB(body, physicsClientId=c)[0][2]
        pybullet.resetBasePositionAndOrientation(
            body, (position[0], position[1], 0.2 - bottom + 1e-3), orientation, physicsClientId=c
        )
        if rgba is not None:
            pybullet.changeVisualShape(body, -1, rgbaColor=rgba, physicsClientId=c)
        self._bodies.append(body)
        if task_object:
            self.task_objects.append(body)
        return body

    def add_marker(self, position, radius: float, rgba) -> int:
        """A flat disc on the table (a goal), visual only; it is a task object for the masks."""
        c = self.client
        visual = pybullet.createVisualShape(
            pybullet.GEOM_CYLINDER, radius=radius, length=0.002, rgbaColor=rgba, physicsClientId=c
        )
        body = pybullet.createMultiBody(0, -1, visual, basePosition=(position[0], position[1], 0.001), physicsClientId=c)
        self._bodies.append(body)
        self.task_objects.append(body)
        return body

    def reset(self, place, rng: np.random.Generator) -> Observation:
        """Clear the objects, put the arm home, let ``place(env, rng)`` set the task up, settle."""
        c = self.client
        for body in self._bodies:
            pybullet.removeBody(body, physicsClientId=c)
        self._bodies, self.task_objects = [], []
        self._noise = np.random.default_rng(rng.integers(2**32))
        for joint, value in zip(_ARM_JOINTS, _REST):
            pybullet.resetJointState(self.robot, joint, value, physicsClientId=c)
        self.target, self.gripper = HOME.copy(), 1.0
        for _ in range(4):
            for joint, value in zip(_ARM_JOINTS, self._ik(self.target)):
                pybullet.resetJointState(self.robot, joint, value, physicsClientId=c)
        for finger in _FINGER_JOINTS:
            pybullet.resetJointState(self.robot, finger, 0.04, physicsClientId=c)
        place(self, rng)
        for name in self.scene.distractors:
            asset, scale, (x, y) = DISTRACTORS[name]
            self.add_object(asset, (x, y), yaw=1.0, scale=scale, task_object=False)
        self._drive()
        for _ in range(SUBSTEPS):
            pybullet.stepSimulation(physicsClientId=c)
        return self.observe()

    # -- control ---------------------------------------------------------------------

    def _ik(self, tip: np.ndarray) -> list[float]:
        solution = pybullet.calculateInverseKinematics(
            self.robot,
            _EE_LINK,
            tip.tolist(),
            _DOWN,
            restPoses=list(_REST) + [0.04, 0.04],
            maxNumIterations=50,
            physicsClientId=self.client,
        )
        return list(solution[: len(_ARM_JOINTS)])

    def _drive(self) -> None:
        c = self.client
        pybullet.setJointMotorControlArray(
            self.robot,
            _ARM_JOINTS,
            pybullet.POSITION_CONTROL,
            targetPositions=self._ik(self.target),
            forces=[200] * 7,
            physicsClientId=c,
        )
        opening = 0.04 * self.gripper
        pybullet.setJointMotorControlArray(
            self.robot,
            _FINGER_JOINTS,
            pybullet.POSITION_CONTROL,
            targetPositions=[opening] * 2,
            forces=[60] * 2,
            physicsClientId=c,
        )

    def step(self, action: np.ndarray) -> Observation:
        """Apply one action (delta xyz, gripper) for 1/CONTROL_HZ s; return the next observation."""
        delta = np.clip(np.asarray(action[:3], np.float64), -MAX_STEP, MAX_STEP)
        self.target = np.clip(self.target + delta, WORKSPACE_LOW, WORKSPACE_HIGH)
        self.gripper = 1.0 if action[3] >= 0.5 else 0.0
        self._drive()
        for _ in range(SUBSTEPS):
            pybullet.stepSimulation(physicsClientId=self.client)
        return self.observe()

    def tip(self) -> np.ndarray:
        """Finger-tip position (between the fingers), metres."""
        return np.array(pybullet.getLinkState(self.robot, _EE_LINK, physicsClientId=self.client)[4])

    def opening(self) -> float:
        """Gripper opening 0 (closed) .. 1 (open), measured."""
        state = pybullet.getJointStates(self.robot, _FINGER_JOINTS, physicsClientId=self.client)
        return float(np.clip(sum(s[0] for s in state) / 0.08, 0.0, 1.0))

    def position(self, body: int) -> np.ndarray:
        return np.array(pybullet.getBasePositionAndOrientation(body, physicsClientId=self.client)[0])

    # -- camera ----------------------------------------------------------------------

    def observe(self) -> Observation:
        """Render the camera with exact robot and task-object label maps."""
        proprio = np.array([*self.tip(), self.opening()], np.float32)
        if not self.render:
            empty = np.zeros((0, 0), np.uint8)
            return Observation(image=np.zeros((0, 0, 3), np.uint8), robot_mask=empty, object_mask=empty, proprio=proprio)
        view, projection = self._camera
        _, _, rgba, _, seg = pybullet.getCameraImage(
            self.size,
            self.size,
            viewMatrix=view,
            projectionMatrix=projection,
            lightDirection=list(self.scene.light_direction),
            lightColor=list(self.scene.light_color),
            shadow=0,  # shadows double the tiny renderer's time
            flags=pybullet.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX,
            renderer=pybullet.ER_TINY_RENDERER,
            physicsClientId=self.client,
        )
        image = np.asarray(rgba, np.uint8).reshape(self.size, self.size, 4)[..., :3]
        if self.scene.noise_std > 0:
            noisy = image + self._noise.normal(0.0, self.scene.noise_std, image.shape)
            image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        seg = np.asarray(seg, np.int64).reshape(self.size, self.size)
        bodies = np.where(seg >= 0, seg & ((1 << _LINK_SHIFT) - 1), -1)
        robot_mask = np.zeros(seg.shape, np.uint8)
        on_robot = bodies == self.robot
        robot_mask[on_robot] = self._link_labels[seg[on_robot] >> _LINK_SHIFT]
        object_mask = np.zeros(seg.shape, np.uint8)
        for k, body in enumerate(self.task_objects, start=1):
            object_mask[bodies == body] = k
        return Observation(image=np.ascontiguousarray(image), robot_mask=robot_mask, object_mask=object_mask, proprio=proprio)

    def close(self) -> None:
        pybullet.disconnect(self.client)

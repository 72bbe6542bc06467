"""Synthetic robot episodes rendered with pybullet on the CPU, with exact part and object masks.

A scene is a table with a few small task objects and one robot arm (Franka Panda, KUKA iiwa
with a WSG-50 gripper, or xArm6 with its gripper). The arm follows a smooth trajectory
through random end-effector waypoints above the table (solved with pybullet's inverse
kinematics, so the gripper stays in the workspace the cameras look at) while the
gripper opens and closes. Every frame is rendered by pybullet's software renderer
together with a per-pixel (object, link) id image, which becomes the project's label
map (``segmentation.labels``) through the link table :data:`ROBOTS`, and the task
objects' label map (0 none, k = the k-th object placed on the table).

This module holds only the simulation and the rendering; ``pipelines/sample_data.py``
writes the episodes as an RLDS dataset. Everything random is drawn from a
``numpy.random.Generator`` seeded by the caller, so the same seed gives the same pixels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np
import pybullet
import pybullet_data

from segmentation.labels import ARM, BACKGROUND, BODY, GRIPPER

#: Joint positions in the state vector are padded to this many (xArm6 has 6).
STATE_ARM_JOINTS = 7
#: State = padded arm joint positions + gripper opening (1 open, 0 closed).
STATE_SIZE = STATE_ARM_JOINTS + 1
#: Action = delta end-effector xyz, delta rpy, gripper opening target.
ACTION_SIZE = 7

THIRD_PERSON_CAMERAS = ("image_0", "image_1")
WRIST_CAMERA = "image_wrist"

#: How the third-person cameras move over an episode: not at all, a slow pan (yaw plus a
#: little sideways travel) or hand-held shake (small random rotation and travel per frame).
CAMERA_MOTIONS = ("none", "pan", "shake")

# pybullet packs a segmentation pixel as object id + ((link index + 1) << 24).
_LINK_SHIFT = 24
_OBJECT_ID_MASK = (1 << _LINK_SHIFT) - 1


@dataclasses.dataclass(frozen=True)
class GripperJoint:
    """One gripper joint and its positions when fully open and fully closed."""

    joint: int
    open: float
    closed: float


@dataclasses.dataclass(frozen=True)
class RobotModel:
    """A pybullet robot asset and how its links map onto the project's labels.

    Links are pybullet link indices (-1 is the base). A link listed in neither
    ``arm_links`` nor ``gripper_links`` is robot body (label 1).
    """

    name: str
    asset: str  # path inside pybullet_data; ``.sdf`` assets are loaded with loadSDF
    arm_joints: tuple[int, ...]  # revolute joints the trajectory drives, base to wrist
    ee_link: int  # link whose pose the waypoints set (tool frame, z axis = approach)
    ee_down_euler: tuple[float, float, float]  # ee orientation with the tool pointing down
    arm_links: tuple[int, ...]
    gripper_links: tuple[int, ...]
    gripper_joints: tuple[GripperJoint, ...]
    rest_pose: tuple[float, ...]  # arm joint positions the IK null space pulls toward
    tool_length: float  # metres from ``ee_link`` to the finger tips along the approach axis
    wrist_side_axis: int  # ``ee_link`` axis across the finger opening; the wrist camera sits along it
    base_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def link_labels(self, num_links: int) -> np.ndarray:
        """Label per link, indexed by ``link + 1`` so the base (-1) sits at 0."""
        labels = np.full(num_links + 1, BODY, dtype=np.uint8)
        labels[np.asarray(self.arm_links) + 1] = ARM
        labels[np.asarray(self.gripper_links) + 1] = GRIPPER
        return labels


#: The one table of which links are body, arm and gripper, per robot.
ROBOTS: dict[str, RobotModel] = {
    "panda": RobotModel(
        name="panda",
        asset="franka_panda/panda.urdf",
        arm_joints=(0, 1, 2, 3, 4, 5, 6),
        ee_link=11,  # panda_grasptarget
        ee_down_euler=(math.pi, 0.0, 0.0),
        # body: -1 panda_link0 (the base)
        arm_links=(0, 1, 2, 3, 4, 5, 6, 7),  # panda_link1..7, link8 (flange)
        gripper_links=(8, 9, 10, 11),  # panda_hand, both fingers, grasp target
        gripper_joints=(GripperJoint(9, 0.04, 0.0), GripperJoint(10, 0.04, 0.0)),
        rest_pose=(0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8),
        tool_length=0.0,
        wrist_side_axis=0,
    ),
    "kuka": RobotModel(
        # pybullet_data's combination of kuka_iiwa/model.urdf and the WSG-50 gripper,
        # one body, so the gripper links carry their own link indices.
        name="kuka",
        asset="kuka_iiwa/kuka_with_gripper2.sdf",
        arm_joints=(0, 1, 2, 3, 4, 5, 6),
        ee_link=6,  # lbr_iiwa_link_7 (flange)
        ee_down_euler=(0.0, math.pi, 0.0),
        # body: -1 lbr_iiwa_link_0 (the base)
        arm_links=(0, 1, 2, 3, 4, 5, 6),  # lbr_iiwa_link_1..7
        gripper_links=(7, 8, 9, 10, 11, 12, 13),  # WSG-50 base, fingers, finger tips
        gripper_joints=(
            GripperJoint(8, -0.3, 0.0),
            GripperJoint(11, 0.3, 0.0),
            GripperJoint(10, 0.0, 0.0),
            GripperJoint(13, 0.0, 0.0),
        ),
        rest_pose=(0.0, 0.5, 0.0, -1.4, 0.0, 1.2, 0.0),
        tool_length=0.2,
        wrist_side_axis=1,
    ),
    "xarm": RobotModel(
        name="xarm",
        asset="xarm/xarm6_with_gripper.urdf",
        arm_joints=(1, 2, 3, 4, 5, 6),
        ee_link=7,  # xarm_gripper_base_link
        ee_down_euler=(math.pi, 0.0, 0.0),
        # body: -1 world (no geometry), 0 link_base
        arm_links=(1, 2, 3, 4, 5, 6),  # link1..6
        gripper_links=(7, 8, 9, 10, 11, 12, 13),  # gripper base, knuckles, fingers
        gripper_joints=tuple(GripperJoint(j, 0.0, 0.85) for j in (8, 9, 10, 11, 12, 13)),
        rest_pose=(0.0, -0.5, -0.8, 0.0, 1.3, 0.0),
        tool_length=0.17,
        wrist_side_axis=0,
    ),
}


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """What one episode looks like from outside: size and which cameras."""

    size: int = 128
    cameras: int = 2  # third-person cameras, 1 or 2
    wrist: bool = False
    camera_motion: str = "none"  # one of CAMERA_MOTIONS, for the third-person cameras
    # Also render every frame with the robot hidden: the true empty scene ("true plate")
    # that a clean plate estimated from the frames is measured against.
    true_plate: bool = False

    def camera_names(self) -> tuple[str, ...]:
        """Camera feature names in the order they are rendered."""
        names = THIRD_PERSON_CAMERAS[: self.cameras]
        return names + ((WRIST_CAMERA,) if self.wrist else ())


@dataclasses.dataclass
class RenderedEpisode:
    """One simulated episode: per-camera frames and label maps, and the robot's signals."""

    robot: str
    instruction: str
    frames: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8
    label_maps: dict[str, np.ndarray]  # camera -> (T, H, W) uint8, segmentation.labels
    object_maps: dict[str, np.ndarray]  # camera -> (T, H, W) uint8: 0 none, k = object k
    object_names: tuple[str, ...]  # object k's name at index k-1 ("cube", "duck"...)
    states: np.ndarray  # (T, STATE_SIZE) float32
    actions: np.ndarray  # (T, ACTION_SIZE) float32
    # camera -> (T, H, W, 3) uint8, the same frames with the robot hidden (RenderConfig.true_plate).
    true_plates: dict[str, np.ndarray] | None = None


@dataclasses.dataclass(frozen=True)
class _Camera:
    view: list[float]
    projection: list[float]


@dataclasses.dataclass(frozen=True)
class _CameraPose:
    """Where a third-person camera is and what it looks at; ``fov`` in degrees."""

    eye: np.ndarray
    target: np.ndarray
    fov: float
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def camera(self) -> _Camera:
        view = pybullet.computeViewMatrix(self.eye.tolist(), self.target.tolist(), list(self.up))
        projection = pybullet.computeProjectionMatrixFOV(self.fov, 1.0, 0.05, 5.0)
        return _Camera(view=list(view), projection=list(projection))


@dataclasses.dataclass(frozen=True)
class _Lighting:
    direction: tuple[float, float, float]
    color: tuple[float, float, float]


# (pybullet_data asset, name, scale). Scaled to 10-13 cm, the size of the things tabletop
# datasets manipulate, so that a task object spans enough pixels at sample sizes (64-128 px)
# to be kept, measured and seen in previews.
_OBJECT_ASSETS = (
    ("cube_small.urdf", "cube", 2.2),
    ("lego/lego.urdf", "lego brick", 3.2),
    ("duck_vhacd.urdf", "duck", 1.4),
    ("sphere_small.urdf", "ball", 1.8),
)

# The box the finger tips move in (metres, robot base at the origin, table top at z = 0)
# and the point the third-person cameras look at.
_WORKSPACE_LOW = np.array([0.35, -0.25, 0.06])
_WORKSPACE_HIGH = np.array([0.6, 0.25, 0.35])
_LOOK_AT = np.array([0.3, 0.0, 0.3])
_TABLE_TOP_Z = 0.625  # table.urdf's top surface above its origin


def render_episode(robot: str, steps: int, config: RenderConfig, rng: np.random.Generator) -> RenderedEpisode:
    """Simulate and render one episode of ``robot`` with ``steps`` frames per camera.

    Opens its own pybullet DIRECT connection and closes it afterwards, so calls are
    independent of each other and of any other pybullet user in the process.
    """
    if robot not in ROBOTS:
        raise ValueError(f"unknown robot {robot!r}; expected one of {sorted(ROBOTS)}")
    if config.cameras not in (1, 2):
        raise ValueError(f"cameras must be 1 or 2, got {config.cameras}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if config.camera_motion not in CAMERA_MOTIONS:
        raise ValueError(f"camera_motion must be one of {', '.join(CAMERA_MOTIONS)}, got {config.camera_motion!r}")
    model = ROBOTS[robot]
    client = pybullet.connect(pybullet.DIRECT)
    try:
        return _simulate(client, model, steps, config, rng)
    finally:
        pybullet.disconnect(client)


def _simulate(client: int, model: RobotModel, steps: int, config: RenderConfig, rng: np.random.Generator) -> RenderedEpisode:
    pybullet.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
    robot_id = _load_robot(client, model)
    instruction, objects = _build_scene(client, rng)
    object_ids = np.array([body for body, _ in objects], np.int64)
    poses = [_third_person_pose(rng, index) for index in range(config.cameras)]
    lighting = _random_lighting(rng)
    arm_path, gripper_path = _trajectory(client, robot_id, model, steps, rng)
    # Drawn after everything else, so a moving camera sees the same scene and robot motion
    # as the static one of the same seed (and a static episode draws exactly what it always did).
    camera_paths = [_camera_path(pose, config.camera_motion, steps, rng) for pose in poses]
    link_labels = model.link_labels(pybullet.getNumJoints(robot_id, physicsClientId=client))

    names = config.camera_names()
    frames = {name: np.empty((steps, config.size, config.size, 3), np.uint8) for name in names}
    label_maps = {name: np.empty((steps, config.size, config.size), np.uint8) for name in names}
    object_maps = {name: np.empty((steps, config.size, config.size), np.uint8) for name in names}
    true_plates = (
        {name: np.empty((steps, config.size, config.size, 3), np.uint8) for name in names} if config.true_plate else None
    )
    ee_poses = np.empty((steps, 6), np.float64)
    for t in range(steps):
        _set_pose(client, robot_id, model, arm_path[t], gripper_path[t])
        ee_poses[t] = _ee_pose(client, robot_id, model)
        step_cameras = [path[t] for path in camera_paths]
        if config.wrist:
            step_cameras.append(_wrist_camera(client, robot_id, model))
        for name, camera in zip(names, step_cameras):
            rgb, seg = _render(client, camera, lighting, config.size)
            frames[name][t] = rgb
            label_maps[name][t] = _label_map(seg, robot_id, link_labels)
            object_maps[name][t] = _object_map(seg, object_ids)
        if true_plates is not None:
            with _robot_hidden(client, robot_id, model):
                for name, camera in zip(names, step_cameras):
                    true_plates[name][t] = _render(client, camera, lighting, config.size)[0]

    states = np.zeros((steps, STATE_SIZE), np.float32)
    states[:, : len(model.arm_joints)] = arm_path
    states[:, STATE_ARM_JOINTS] = gripper_path
    return RenderedEpisode(
        robot=model.name,
        instruction=instruction,
        frames=frames,
        label_maps=label_maps,
        object_maps=object_maps,
        object_names=tuple(name for _, name in objects),
        states=states,
        actions=_actions(ee_poses, gripper_path),
        true_plates=true_plates,
    )


#: Where the robot waits while the true plate is rendered: far under the floor, out of every
#: view and below everything the light reaches.
_HIDDEN_BASE = (0.0, 0.0, -50.0)


@contextlib.contextmanager
def _robot_hidden(client: int, robot_id: int, model: RobotModel):
    """The robot moved out of the scene for the block, then put back exactly where it was."""
    pybullet.resetBasePositionAndOrientation(robot_id, _HIDDEN_BASE, (0, 0, 0, 1), physicsClientId=client)
    try:
        yield
    finally:
        pybullet.resetBasePositionAndOrientation(robot_id, model.base_offset, (0, 0, 0, 1), physicsClientId=client)


def _load_robot(client: int, model: RobotModel) -> int:
    if model.asset.endswith(".sdf"):
        (robot_id,) = pybullet.loadSDF(model.asset, physicsClientId=client)
    else:
        robot_id = pybullet.loadURDF(model.asset, useFixedBase=True, physicsClientId=client)
    pybullet.resetBasePositionAndOrientation(robot_id, model.base_offset, (0, 0, 0, 1), physicsClientId=client)
    return robot_id


def _build_scene(client: int, rng: np.random.Generator) -> tuple[str, list[tuple[int, str]]]:
    """Floor, a table with a random colour and 2-4 objects.

    Returns a language instruction and the objects' (pybullet body id, name), in the
    order they were placed (object k is the k-th).
    """
    pybullet.loadURDF("plane.urdf", (0, 0, -_TABLE_TOP_Z), physicsClientId=client)
    table = pybullet.loadURDF("table/table.urdf", (0.5, 0, -_TABLE_TOP_Z), physicsClientId=client)
    table_rgb = rng.uniform(0.25, 0.95, size=3)
    pybullet.changeVisualShape(table, -1, rgbaColor=[*table_rgb, 1.0], physicsClientId=client)

    objects = []
    for _ in range(int(rng.integers(2, 5))):
        asset, name, scale = _OBJECT_ASSETS[int(rng.integers(len(_OBJECT_ASSETS)))]
        position = (rng.uniform(0.35, 0.7), rng.uniform(-0.3, 0.3), 0.0)
        orientation = pybullet.getQuaternionFromEuler((0, 0, rng.uniform(-math.pi, math.pi)))
        body = pybullet.loadURDF(asset, position, orientation, globalScaling=scale, physicsClientId=client)
        # Stand it on the table top (z = 0): its lowest point is where its size puts it.
        bottom = pybullet.getAABB(body, physicsClientId=client)[0][2]
        pybullet.resetBasePositionAndOrientation(body, (position[0], position[1], -bottom), orientation, physicsClientId=client)
        pybullet.changeVisualShape(body, -1, rgbaColor=[*rng.uniform(0.1, 1.0, size=3), 1.0], physicsClientId=client)
        objects.append((body, name))
    verb = ("pick up", "push", "touch", "move to")[int(rng.integers(4))]
    return f"{verb} the {objects[int(rng.integers(len(objects)))][1]}", objects


def _third_person_pose(rng: np.random.Generator, index: int) -> _CameraPose:
    """A camera looking at the workspace from the front-left (0) or front-right (1)."""
    side = -1.0 if index == 0 else 1.0
    azimuth = math.radians(side * rng.uniform(15, 75))
    elevation = math.radians(rng.uniform(20, 45))
    distance = rng.uniform(1.0, 1.3)
    target = _LOOK_AT + rng.uniform(-0.05, 0.05, size=3)
    eye = target + distance * np.array(
        [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
    )
    return _CameraPose(eye=eye, target=target, fov=rng.uniform(45, 55))


def _camera_path(pose: _CameraPose, motion: str, steps: int, rng: np.random.Generator) -> list[_Camera]:
    """The camera at each step: ``pose`` throughout (``none``), a slow pan, or hand-held shake.

    A pan turns the view 5-9 degrees left or right over the episode about the camera's own
    position while it travels 1-3 cm sideways (so there is a little parallax, as with a real
    head or tripod pan). Shake is independent per frame: rotations of about 0.5 degree
    (yaw, pitch; roll less) and travel of about 3 mm, as a hand holding a phone.
    """
    if motion == "none":
        return [pose.camera()] * steps
    forward = pose.target - pose.eye
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    if motion == "pan":
        span = math.radians(rng.uniform(5, 9)) * (1 if rng.random() < 0.5 else -1)
        travel = rng.uniform(0.01, 0.03)
        progress = np.linspace(-0.5, 0.5, steps) if steps > 1 else np.zeros(1)
        yaw, pitch, roll = span * progress, np.zeros(steps), np.zeros(steps)
        offsets = travel * progress[:, None] * right[None, :]
    else:
        angles = np.radians(rng.normal(0.0, (0.5, 0.5, 0.25), size=(steps, 3)))
        yaw, pitch, roll = angles.T
        offsets = rng.normal(0.0, 0.003, size=(steps, 3))
    cameras = []
    for t in range(steps):
        direction = _rotated(forward, (0.0, 0.0, 1.0), yaw[t])
        side = np.cross(direction, (0.0, 0.0, 1.0))
        direction = _rotated(direction, side / np.linalg.norm(side), pitch[t])
        up = _rotated(np.array([0.0, 0.0, 1.0]), direction / np.linalg.norm(direction), roll[t])
        eye = pose.eye + offsets[t]
        moved = _CameraPose(eye=eye, target=eye + direction, fov=pose.fov, up=tuple(float(u) for u in up))
        cameras.append(moved.camera())
    return cameras


def _rotated(vector: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """``vector`` turned by ``angle`` radians about the unit ``axis`` (Rodrigues)."""
    vector, axis = np.asarray(vector, float), np.asarray(axis, float)
    cos, sin = math.cos(angle), math.sin(angle)
    return vector * cos + np.cross(axis, vector) * sin + axis * np.dot(axis, vector) * (1 - cos)


def _wrist_camera(client: int, robot_id: int, model: RobotModel) -> _Camera:
    """A camera fixed to the end effector, behind and beside it, looking along the approach axis."""
    position, orientation = pybullet.getLinkState(robot_id, model.ee_link, physicsClientId=client)[4:6]
    rotation = np.array(pybullet.getMatrixFromQuaternion(orientation)).reshape(3, 3)
    approach, side = rotation[:, 2], rotation[:, model.wrist_side_axis]
    tip = np.asarray(position) + model.tool_length * approach
    eye = tip - 0.12 * approach + 0.1 * side
    target = tip + 0.2 * approach
    view = pybullet.computeViewMatrix(eye.tolist(), target.tolist(), side.tolist())
    projection = pybullet.computeProjectionMatrixFOV(70, 1.0, 0.02, 3.0)
    return _Camera(view=list(view), projection=list(projection))


def _random_lighting(rng: np.random.Generator) -> _Lighting:
    azimuth = rng.uniform(-math.pi, math.pi)
    elevation = rng.uniform(0.5, 1.4)
    direction = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation))
    color = tuple(float(c) for c in rng.uniform(0.75, 1.0, size=3))
    return _Lighting(direction=direction, color=color)


def _trajectory(
    client: int, robot_id: int, model: RobotModel, steps: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Arm joint positions (T, J) and gripper openings (T,) through random waypoints.

    Waypoints are end-effector poses above the table, turned into joint positions by
    inverse kinematics; between waypoints the joints follow a smoothstep so velocities
    are zero at each waypoint. The gripper switches open/closed at some waypoints.
    """
    num_waypoints = max(2, steps // 6 + 2)
    waypoints = np.stack([_solve_ik(client, robot_id, model, rng) for _ in range(num_waypoints)])
    gripper_waypoints = (rng.random(num_waypoints) < 0.5).astype(np.float64)
    gripper_waypoints[0] = 1.0  # episodes start with the gripper open

    # Continuous time along the waypoint sequence, with smoothstep inside each segment.
    u = np.linspace(0.0, num_waypoints - 1, steps)
    segment = np.minimum(u.astype(int), num_waypoints - 2)
    s = u - segment
    s = s * s * (3 - 2 * s)
    arm = waypoints[segment] * (1 - s)[:, None] + waypoints[segment + 1] * s[:, None]
    gripper = gripper_waypoints[segment] * (1 - s) + gripper_waypoints[segment + 1] * s
    return arm, gripper


def _solve_ik(client: int, robot_id: int, model: RobotModel, rng: np.random.Generator) -> np.ndarray:
    """Arm joint positions that put the finger tips at a random point, pointing roughly down."""
    tip = rng.uniform(_WORKSPACE_LOW, _WORKSPACE_HIGH)
    roll, pitch, yaw = model.ee_down_euler
    tilt = rng.uniform(-0.3, 0.3, size=2)
    orientation = pybullet.getQuaternionFromEuler((roll + tilt[0], pitch + tilt[1], yaw + rng.uniform(-1.2, 1.2)))
    approach = np.array(pybullet.getMatrixFromQuaternion(orientation)).reshape(3, 3)[:, 2]
    target = tip - model.tool_length * approach

    movable = _movable_joints(client, robot_id)
    lower, upper, rest = [], [], []
    for joint in movable:
        info = pybullet.getJointInfo(robot_id, joint, physicsClientId=client)
        if joint in model.arm_joints:
            lower.append(info[8])
            upper.append(info[9])
            rest.append(model.rest_pose[model.arm_joints.index(joint)])
        else:  # gripper joints stay where they are (limits must hold the current value)
            current = pybullet.getJointState(robot_id, joint, physicsClientId=client)[0]
            lower.append(current)
            upper.append(current)
            rest.append(current)
    ranges = [max(u - lo, 1e-3) for lo, u in zip(lower, upper)]

    # Start every solve from the rest pose so the answer depends only on the target.
    for joint, value in zip(model.arm_joints, model.rest_pose):
        pybullet.resetJointState(robot_id, joint, value, physicsClientId=client)
    solution = None
    for _ in range(4):  # IK is solved iteratively from the current pose; refine a few times
        solution = pybullet.calculateInverseKinematics(
            robot_id,
            model.ee_link,
            target.tolist(),
            orientation,
            lowerLimits=lower,
            upperLimits=upper,
            jointRanges=ranges,
            restPoses=rest,
            maxNumIterations=100,
            physicsClientId=client,
        )
        for joint, value in zip(movable, solution):
            if joint in model.arm_joints:
                pybullet.resetJointState(robot_id, joint, value, physicsClientId=client)
    by_joint = dict(zip(movable, solution))
    angles = np.array([by_joint[j] for j in model.arm_joints])
    limits = np.array([pybullet.getJointInfo(robot_id, j, physicsClientId=client)[8:10] for j in model.arm_joints])
    return np.clip(angles, limits[:, 0], limits[:, 1])


def _movable_joints(client: int, robot_id: int) -> list[int]:
    return [
        j
        for j in range(pybullet.getNumJoints(robot_id, physicsClientId=client))
        if pybullet.getJointInfo(robot_id, j, physicsClientId=client)[2] != pybullet.JOINT_FIXED
    ]


def _set_pose(client: int, robot_id: int, model: RobotModel, arm: np.ndarray, opening: float) -> None:
    for joint, value in zip(model.arm_joints, arm):
        pybullet.resetJointState(robot_id, joint, float(value), physicsClientId=client)
    for g in model.gripper_joints:
        pybullet.resetJointState(robot_id, g.joint, g.closed + opening * (g.open - g.closed), physicsClientId=client)


def _ee_pose(client: int, robot_id: int, model: RobotModel) -> np.ndarray:
    position, orientation = pybullet.getLinkState(robot_id, model.ee_link, physicsClientId=client)[4:6]
    return np.array([*position, *pybullet.getEulerFromQuaternion(orientation)])


def _actions(ee_poses: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """Action t moves the end effector from pose t to pose t+1; the last action holds still."""
    steps = len(ee_poses)
    actions = np.zeros((steps, ACTION_SIZE), np.float32)
    delta = np.diff(ee_poses, axis=0)
    delta[:, 3:] = (delta[:, 3:] + math.pi) % (2 * math.pi) - math.pi  # wrap angle differences
    actions[:-1, :6] = delta
    actions[:-1, 6] = gripper[1:]
    actions[-1, 6] = gripper[-1]
    return actions


def _render(client: int, camera: _Camera, lighting: _Lighting, size: int) -> tuple[np.ndarray, np.ndarray]:
    _, _, rgba, _, seg = pybullet.getCameraImage(
        size,
        size,
        viewMatrix=camera.view,
        projectionMatrix=camera.projection,
        lightDirection=list(lighting.direction),
        lightColor=list(lighting.color),
        shadow=1,
        flags=pybullet.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX,
        renderer=pybullet.ER_TINY_RENDERER,
        physicsClientId=client,
    )
    rgb = np.asarray(rgba, np.uint8).reshape(size, size, 4)[..., :3]
    return rgb, np.asarray(seg, np.int64).reshape(size, size)


def _label_map(seg: np.ndarray, robot_id: int, link_labels: np.ndarray) -> np.ndarray:
    """Turn pybullet's packed (object, link) ids into a label map."""
    labels = np.full(seg.shape, BACKGROUND, np.uint8)
    valid = seg >= 0  # -1 where no object was hit
    on_robot = valid & ((seg & _OBJECT_ID_MASK) == robot_id)
    links_plus_one = seg[on_robot] >> _LINK_SHIFT
    labels[on_robot] = link_labels[links_plus_one]
    return labels


def _object_map(seg: np.ndarray, object_ids: np.ndarray) -> np.ndarray:
    """Object label map from pybullet's packed ids: k where the k-th object's body was hit."""
    labels = np.zeros(seg.shape, np.uint8)
    bodies = np.where(seg >= 0, seg & _OBJECT_ID_MASK, -1)
    for k, body in enumerate(object_ids, start=1):
        labels[bodies == body] = k
    return labels

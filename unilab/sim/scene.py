"""Build one in-hand scene (Menagerie hand + free object + floor + physics options) as an MjSpec.

The hand is never copied by hand: it is loaded from ``mujoco_menagerie`` and edited through
``mujoco.MjSpec``. Everything a backend or task reads by index is collected in
:class:`SceneLayout`, computed from the compiled model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import mujoco
import numpy as np

from unilab.errors import UnilabError
from unilab.sim.hand_spec import HandSpec

OBJECT_BODY = "object"
OBJECT_JOINT = "object_joint"
OBJECT_GEOM = "object_geom"
SHARED_MENAGERIE_HINT = (
    "Set MENAGERIE_ROOT to a folder holding the Menagerie models (offline copies live in "
    "../shared/menagerie beside the checkout: `export MENAGERIE_ROOT=$(realpath ../shared/menagerie)`), "
    "or connect to the internet so mujoco_menagerie can download them."
)


class SceneError(UnilabError, RuntimeError):
    """A scene cannot be built from the configured hand and object."""


@dataclass(frozen=True)
class ObjectSpec:
    """The free object the hand rotates."""

    shape: str = "sphere"
    """``sphere`` (size = radius,) or ``cylinder`` (size = radius, half-height)."""
    size: tuple[float, ...] = (0.04,)
    mass: float = 0.05
    friction: tuple[float, float, float] = (2.0, 0.05, 0.01)
    condim: int = 6
    pos: tuple[float, float, float] = (0.0, 0.0, 0.1)
    """Nominal (reset) position of the object centre in world coordinates."""


@dataclass(frozen=True)
class PhysicsOptions:
    """Solver settings; ``ctrl_dt = timestep * substeps``."""

    timestep: float = 0.005
    substeps: int = 10
    cone: str = "elliptic"
    impratio: float = 1.0
    noslip_iterations: int = 0
    integrator: str = "implicitfast"
    floor_z: float = -0.1
    jacobian: str = "auto"
    """MuJoCo's constraint Jacobian: ``dense``, ``sparse`` or ``auto`` (dense below 60 dofs). A speed setting
    only: both give the same trajectory to round-off, but which is faster depends on the scene."""

    @property
    def ctrl_dt(self) -> float:
        return self.timestep * self.substeps


def load_menagerie_spec(robot: str, entry: str) -> mujoco.MjSpec:
    """Load ``robot``/``entry`` from MuJoCo Menagerie as an editable spec."""
    import mujoco_menagerie

    try:
        return mujoco_menagerie.get(robot).spec(entry)
    except Exception as error:  # the package raises several types (not found, download, checksum)
        raise SceneError(f"cannot load Menagerie model {robot}/{entry}: {error}. {SHARED_MENAGERIE_HINT}") from error


def build_scene(
    hand: HandSpec,
    obj: ObjectSpec,
    physics: PhysicsOptions,
    object_scale: float = 1.0,
    visuals: bool = True,
    movable_object_com: bool = False,
) -> mujoco.MjSpec:
    """Compose hand, object, floor, sensors and options into one spec.

    ``visuals=False`` drops the visual-only geoms and their meshes (bodies keep the inertia they
    had with them), which makes per-env model copies for domain randomisation several times smaller.
    ``movable_object_com=True`` compiles the object as a general body, so that its centre of mass
    can be moved after compilation (COM randomisation); otherwise MuJoCo's "simple body" shortcut
    (inertial frame = body frame, about 5 % faster here) is kept.
    """
    spec = load_menagerie_spec(hand.menagerie_id, hand.menagerie_entry)
    if not visuals:
        _strip_visuals(spec)
    _set_options(spec, physics)
    _mount_hand(spec, hand)
    _set_servos(spec, hand)
    tip_geoms = _prepare_fingertips(spec, hand)
    _add_object(spec, obj, object_scale, movable_object_com)
    _add_floor(spec, physics.floor_z)
    _add_sensors(spec, hand, tip_geoms)
    return spec


def _strip_visuals(spec: mujoco.MjSpec) -> None:
    """Remove geoms that never collide and the meshes only they used, freezing body inertias first."""
    model = spec.compile()
    for body in spec.bodies[1:]:
        index = model.body(body.name).id
        body.explicitinertial = True
        body.mass = model.body_mass[index]
        body.ipos = model.body_ipos[index]
        body.iquat = model.body_iquat[index]
        body.inertia = model.body_inertia[index]
    for geom in [g for g in spec.geoms if not (g.contype or g.conaffinity)]:
        spec.delete(geom)
    used = {geom.meshname for geom in spec.geoms}
    for mesh in [m for m in spec.meshes if m.name not in used]:
        spec.delete(mesh)


def _set_options(spec: mujoco.MjSpec, physics: PhysicsOptions) -> None:
    cones = {"elliptic": mujoco.mjtCone.mjCONE_ELLIPTIC, "pyramidal": mujoco.mjtCone.mjCONE_PYRAMIDAL}
    integrators = {
        "euler": mujoco.mjtIntegrator.mjINT_EULER,
        "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
        "implicit": mujoco.mjtIntegrator.mjINT_IMPLICIT,
        "rk4": mujoco.mjtIntegrator.mjINT_RK4,
    }
    jacobians = {
        "auto": mujoco.mjtJacobian.mjJAC_AUTO,
        "dense": mujoco.mjtJacobian.mjJAC_DENSE,
        "sparse": mujoco.mjtJacobian.mjJAC_SPARSE,
    }
    if physics.cone not in cones or physics.integrator not in integrators or physics.jacobian not in jacobians:
        raise SceneError(
            f"physics cone must be one of {sorted(cones)}, integrator one of {sorted(integrators)} and jacobian "
            f"one of {sorted(jacobians)}; got cone={physics.cone!r}, integrator={physics.integrator!r}, "
            f"jacobian={physics.jacobian!r}"
        )
    spec.option.timestep = physics.timestep
    spec.option.cone = cones[physics.cone]
    spec.option.impratio = physics.impratio
    spec.option.noslip_iterations = physics.noslip_iterations
    spec.option.integrator = integrators[physics.integrator]
    spec.option.jacobian = jacobians[physics.jacobian]


def _mount_hand(spec: mujoco.MjSpec, hand: HandSpec) -> None:
    root = spec.worldbody.first_body()
    root.pos = hand.base_pos
    if hand.base_quat is not None:
        root.quat = hand.base_quat
    for name in hand.joint_names:
        joint = spec.joint(name)
        if joint is None:
            raise SceneError(f"hand {hand.name!r}: joint {name!r} is missing from {hand.menagerie_id}")
        if hand.joint_damping is not None:
            joint.damping = [hand.joint_damping, 0.0, 0.0]
    if hand.gravity_compensation:
        for body in [root, *root.find_all(mujoco.mjtObj.mjOBJ_BODY)]:
            body.gravcomp = 1.0


def _set_servos(spec: mujoco.MjSpec, hand: HandSpec) -> None:
    targets = [actuator.target for actuator in spec.actuators]
    if tuple(targets) != hand.joint_names:
        raise SceneError(f"hand {hand.name!r}: actuator order {targets} differs from {list(hand.joint_names)}")
    for actuator in spec.actuators:
        actuator.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        actuator.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        if hand.kp is not None:
            actuator.gainprm[0] = hand.kp
            actuator.biasprm[1] = -hand.kp
        if hand.kd is not None:
            actuator.biasprm[2] = -hand.kd


def _collision_geoms(body: mujoco.MjsBody) -> list[mujoco.MjsGeom]:
    return [geom for geom in body.geoms if geom.contype or geom.conaffinity]


def _prepare_fingertips(spec: mujoco.MjSpec, hand: HandSpec) -> list[str]:
    """Name each tip's collision geom, set its contact parameters and put a site at its centre."""
    names = []
    for body_name in hand.fingertip_bodies:
        body = spec.body(body_name)
        geoms = _collision_geoms(body) if body is not None else []
        if hand.fingertip_geom_class is not None:
            geoms = [geom for geom in geoms if geom.classname.name == hand.fingertip_geom_class]
        if not geoms:
            raise SceneError(
                f"hand {hand.name!r}: fingertip body {body_name!r} has no collision geom"
                + (f" of class {hand.fingertip_geom_class!r}" if hand.fingertip_geom_class else "")
            )
        geom = geoms[0]
        geom.name = geom.name or f"{body_name}_collision"
        geom.friction = hand.fingertip_friction
        geom.condim = 6
        body.add_site(name=f"{body_name}_site", pos=geom.pos, size=[0.004, 0, 0])
        names.append(geom.name)
    return names


def _add_object(spec: mujoco.MjSpec, obj: ObjectSpec, scale: float, movable_com: bool) -> None:
    shapes = {"sphere": mujoco.mjtGeom.mjGEOM_SPHERE, "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER}
    if obj.shape not in shapes:
        raise SceneError(f"object shape must be one of {sorted(shapes)}, got {obj.shape!r}")
    body = spec.worldbody.add_body(name=OBJECT_BODY, pos=obj.pos)
    if movable_com:
        body.simple = 0  # a simple body's kinematics ignore a moved inertial frame
    body.add_freejoint(name=OBJECT_JOINT)
    size = np.zeros(3)
    size[: len(obj.size)] = np.asarray(obj.size) * scale
    body.add_geom(
        name=OBJECT_GEOM,
        type=shapes[obj.shape],
        size=size,
        mass=obj.mass,
        friction=obj.friction,
        condim=obj.condim,
        priority=1,
        rgba=[0.85, 0.45, 0.2, 1.0],
    )


def _add_floor(spec: mujoco.MjSpec, floor_z: float) -> None:
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, pos=[0, 0, floor_z], size=[1, 1, 0.05])


def _add_sensors(spec: mujoco.MjSpec, hand: HandSpec, tip_geoms: list[str]) -> None:
    for body_name in hand.fingertip_bodies:
        spec.add_sensor(
            name=f"{body_name}_pos",
            type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname=f"{body_name}_site",
        )
    found_and_force, net_force, one_contact = 3, 3, 1
    for body_name, geom_name in zip(hand.fingertip_bodies, tip_geoms, strict=True):
        spec.add_sensor(
            name=f"{body_name}_contact",
            type=mujoco.mjtSensor.mjSENS_CONTACT,
            objtype=mujoco.mjtObj.mjOBJ_GEOM,
            objname=geom_name,
            reftype=mujoco.mjtObj.mjOBJ_GEOM,
            refname=OBJECT_GEOM,
            intprm=[found_and_force, net_force, one_contact],
        )


@dataclass(frozen=True)
class SceneLayout:
    """Indices into qpos / qvel / sensordata that tasks and backends use."""

    hand_qpos: np.ndarray
    hand_qvel: np.ndarray
    object_qpos: int
    """Start of the object's 7 free-joint coordinates (xyz, wxyz)."""
    object_qvel: int
    object_body: int
    tip_pos: np.ndarray
    """(num_tips, 3) sensordata indices of the fingertip positions."""
    tip_contact: np.ndarray
    """(num_tips, 4) sensordata indices of [found, force xyz] per fingertip."""
    joint_range: np.ndarray
    """(num_joints, 2) joint limits in actuator order."""
    kp: np.ndarray
    """(num_joints,) servo stiffness of the compiled model."""
    kd: np.ndarray
    """(num_joints,) servo damping of the compiled model."""

    @classmethod
    def from_model(cls, model: mujoco.MjModel, hand: HandSpec) -> SceneLayout:
        joints = [model.joint(name) for name in hand.joint_names]
        object_joint = model.joint(OBJECT_JOINT)
        tip_pos = np.stack([_sensor_slice(model, f"{b}_pos") for b in hand.fingertip_bodies])
        tip_contact = np.stack([_sensor_slice(model, f"{b}_contact") for b in hand.fingertip_bodies])
        return cls(
            hand_qpos=np.array([int(j.qposadr[0]) for j in joints]),
            hand_qvel=np.array([int(j.dofadr[0]) for j in joints]),
            object_qpos=int(object_joint.qposadr[0]),
            object_qvel=int(object_joint.dofadr[0]),
            object_body=int(model.body(OBJECT_BODY).id),
            tip_pos=tip_pos,
            tip_contact=tip_contact,
            joint_range=np.array([model.jnt_range[j.id] for j in joints]),
            kp=model.actuator_gainprm[:, 0].copy(),
            kd=-model.actuator_biasprm[:, 2].copy(),
        )


def _sensor_slice(model: mujoco.MjModel, name: str) -> np.ndarray:
    sensor = model.sensor(name)
    start = int(sensor.adr[0])
    return np.arange(start, start + int(sensor.dim[0]))


def hand_fingerprint(model: mujoco.MjModel, hand: HandSpec) -> str:
    """Hash of what makes a stored grasp valid: kinematic tree, joint limits and collision shapes.

    Visual geoms, gains and solver options do not enter, so a cache survives cosmetic model updates and
    is valid for scenes built with or without visuals.
    """
    digest = hashlib.sha256()
    digest.update(",".join(hand.joint_names).encode())
    colliding = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
    for array in (
        model.body_pos,
        model.body_quat,
        model.jnt_range,
        model.geom_size[colliding],
        model.geom_pos[colliding],
    ):
        digest.update(np.round(np.asarray(array, dtype=np.float64), 5).tobytes())
    digest.update(np.asarray(model.geom_type[colliding], dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]

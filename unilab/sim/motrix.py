"""MotrixSim backend: the SimBackend protocol on ``motrixsim``, MuJoCo conventions at the boundary.

The scene is the same MjSpec the MuJoCo backend compiles, written to an MJCF file (MotrixSim
resolves mesh files from disk, not from a string). One batched ``SceneData`` per object scale
holds that scale's envs; ``step_n`` runs the substeps. Inside, MotrixSim keeps float32 DoF
arrays with the floating base first and xyzw quaternions; this class maps them to MuJoCo's qpos /
qvel layout (wxyz, joint order of the compiled MuJoCo model) and rebuilds MuJoCo's sensordata
(fingertip positions from sites, fingertip contact from contact queries and link contact forces).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from unilab.errors import UnilabError
from unilab.sim.base import BatchedBackend, contiguous_assignment
from unilab.sim.scene import OBJECT_BODY

log = logging.getLogger(__name__)
MAX_SPEED = 1e3  # |qvel| beyond this counts as a physics breakdown (MotrixSim does not reset by itself)
_thread_pool_size: int | None = None


@dataclass(frozen=True)
class SensorPlan:
    """One scene's sources of MuJoCo's sensordata: (adr, site) positions, and pad-object contact sensors."""

    sites: list[tuple[int, object]]
    contact_adr: np.ndarray
    contact_sensors: list[str]


class MotrixError(UnilabError, RuntimeError):
    """MotrixSim is missing or refused the scene."""


def import_motrixsim():
    try:
        import motrixsim
    except ImportError as error:
        raise MotrixError(
            "sim: motrix needs the motrixsim package: `pip install motrixsim` (or pick --sim mujoco)"
        ) from error
    return motrixsim


def init_thread_pool(motrixsim, num_threads: int) -> None:
    """Size MotrixSim's shared pool once per process, before the first model load."""
    global _thread_pool_size
    if _thread_pool_size is None:
        motrixsim.init_thread_pool(num_threads=num_threads)
        _thread_pool_size = num_threads
    elif _thread_pool_size != num_threads:
        log.info("MotrixSim thread pool already has %d threads; %d requested", _thread_pool_size, num_threads)


def ignored_options(model: mujoco.MjModel) -> list[str]:
    """MuJoCo options of ``model`` that MotrixSim does not read (logged once, never hidden)."""
    ignored = []
    if model.opt.impratio != 1.0:
        ignored.append(f"impratio={model.opt.impratio:g}")
    if model.opt.noslip_iterations:
        ignored.append(f"noslip_iterations={model.opt.noslip_iterations}")
    if model.opt.cone != mujoco.mjtCone.mjCONE_PYRAMIDAL:
        ignored.append("cone=elliptic")
    if model.opt.integrator != mujoco.mjtIntegrator.mjINT_EULER:
        ignored.append(f"integrator={mujoco.mjtIntegrator(model.opt.integrator).name}")
    ignored.append(f"solver={mujoco.mjtSolver(model.opt.solver).name} (MotrixSim uses its own)")
    return ignored


def write_scene(spec: mujoco.MjSpec, model: mujoco.MjModel, directory: Path, name: str) -> Path:
    """Write ``spec`` as MJCF that MotrixSim loads: absolute asset paths, explicit actuator damping."""
    spec = spec.copy()
    spec.option.jacobian = mujoco.mjtJacobian.mjJAC_AUTO  # MuJoCo's speed setting, not written as the default
    for actuator, kd in zip(spec.actuators, -model.actuator_biasprm[:, 2], strict=True):
        # MuJoCo's dampratio form stores a positive biasprm[2]; MotrixSim needs the compiled -kd.
        bias = np.array(actuator.biasprm)
        bias[2] = -abs(kd)
        actuator.biasprm = bias
    for attribute in ("meshdir", "texturedir"):
        value = getattr(spec, attribute)
        if value and not Path(value).is_absolute():
            setattr(spec, attribute, str((Path(spec.modelfiledir) / value).resolve()))
    path = directory / f"{name}.xml"
    path.write_text(spec.to_xml())
    return path


class MotrixBackend(BatchedBackend):
    """SimBackend on MotrixSim. ``specs`` and ``models`` hold one scene per object scale (same sizes).

    ``diverged`` marks the envs whose state went non-finite or absurdly fast during the last step.
    """

    name = "motrix"

    def __init__(
        self,
        specs: Sequence[mujoco.MjSpec],
        models: Sequence[mujoco.MjModel],
        num_envs: int,
        substeps: int,
        num_threads: int | None = None,
        object_force: bool = False,
    ) -> None:
        motrixsim = import_motrixsim()
        super().__init__(num_envs, substeps, num_threads)
        init_thread_pool(motrixsim, self.num_threads)
        first = models[0]
        self.timestep = float(first.opt.timestep)
        self.nq, self.nv, self.nu = first.nq, first.nv, first.nu
        self.env_scale = contiguous_assignment(num_envs, len(models))
        self.groups = [np.flatnonzero(self.env_scale == i) for i in range(len(models))]
        log.info("MotrixSim ignores these MuJoCo options: %s", ", ".join(ignored_options(first)))

        self._directory = tempfile.TemporaryDirectory(prefix="unilab-motrix-")
        self.scene_models, self.datas = [], []
        for index, (spec, model) in enumerate(zip(specs, models, strict=True)):
            path = write_scene(spec, model, Path(self._directory.name), f"scale_{index}")
            scene = load_scene(motrixsim, path)
            scene.options.timestep = self.timestep
            scene.reports.contact_forces = True
            self.scene_models.append(scene)
            self.datas.append(motrixsim.SceneData(scene, batch=[max(len(self.groups[index]), 1)]))
        self._map_layout(first, self.scene_models[0])
        self._plans = [self._sensor_plan(first, scene) for scene in self.scene_models]

        # Preallocated MuJoCo-layout state and sensors.
        self._qpos = np.zeros((num_envs, self.nq))
        self._qvel = np.zeros((num_envs, self.nv))
        self._sensordata = np.zeros((num_envs, first.nsensordata))
        self._diverged = np.zeros(num_envs, dtype=bool)
        self._object_force = object_force
        initial = mujoco.MjData(first)
        mujoco.mj_forward(first, initial)
        self.reset(np.arange(num_envs), np.tile(initial.qpos, (num_envs, 1)), np.zeros((num_envs, self.nv)))
        self._nominal_friction = [self._geom_friction(i) for i in range(len(models))]
        self._nominal_com = [
            scene.links[self._object_link].get_center_of_mass_override(data).copy()
            for scene, data in zip(self.scene_models, self.datas, strict=True)
        ]

    # Layout mapping --------------------------------------------------------------------------------
    def _map_layout(self, model: mujoco.MjModel, scene) -> None:
        """Index maps MuJoCo qpos/qvel <-> MotrixSim dof_pos/dof_vel, actuators, links, sites, geoms."""
        pos_map, vel_map = np.zeros(model.nq, dtype=np.int64), np.zeros(model.nv, dtype=np.int64)
        for joint_id in range(model.njnt):
            joint = model.joint(joint_id)
            qadr, vadr = int(model.jnt_qposadr[joint_id]), int(model.jnt_dofadr[joint_id])
            if model.jnt_type[joint_id] == mujoco.mjtJoint.mjJNT_FREE:
                body = scene.get_body(model.body(int(model.jnt_bodyid[joint_id])).name)
                base = body.floatingbase
                positions, velocities = np.array(base.dof_pos_indices), np.array(base.dof_vel_indices)
                # MuJoCo [x y z qw qx qy qz] <- MotrixSim [x y z qx qy qz qw]
                pos_map[qadr : qadr + 7] = positions[[0, 1, 2, 6, 3, 4, 5]]
                vel_map[vadr : vadr + 6] = velocities
            else:
                target = scene.get_joint(joint.name)
                if target is None:
                    raise MotrixError(f"MotrixSim scene has no joint {joint.name!r}")
                pos_map[qadr] = target.dof_pos_index
                vel_map[vadr] = target.dof_vel_index
        self._pos_map, self._vel_map = pos_map, vel_map
        self._object_link = scene.get_link_index(OBJECT_BODY)
        self._dof_sizes = (int(pos_map.max()) + 1, int(vel_map.max()) + 1)

    def _sensor_plan(self, model: mujoco.MjModel, scene) -> SensorPlan:
        """How the MuJoCo sensors of the scene are rebuilt from ``scene``'s state."""
        sites, contact_adr, contact_sensors = [], [], []
        for sensor_id in range(model.nsensor):
            sensor = model.sensor(sensor_id)
            adr, kind = int(sensor.adr[0]), sensor.type[0]
            if kind == mujoco.mjtSensor.mjSENS_FRAMEPOS:
                sites.append((adr, scene.get_site(model.site(int(sensor.objid[0])).name)))
            elif kind == mujoco.mjtSensor.mjSENS_CONTACT and int(sensor.dim[0]) == 4:  # [found, net force xyz]
                # MotrixSim evaluates the MJCF contact sensor itself: the pad-object pair only, unlike
                # the pad link's net contact force, which also counts a finger or palm touching it.
                contact_adr.append(adr)
                contact_sensors.append(sensor.name)
            else:
                raise MotrixError(f"sensor {sensor.name!r} (type {kind}) has no MotrixSim equivalent")
        return SensorPlan(sites, np.array(contact_adr, dtype=np.int64), contact_sensors)

    # State -------------------------------------------------------------------------------------------
    def reset(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        self._qpos[env_ids] = qpos
        self._qvel[env_ids] = qvel
        for group, data, scene in zip(self.groups, self.datas, self.scene_models, strict=True):
            if len(group) and np.isin(group, env_ids).any():
                data.reset(
                    scene,
                    self._to_dof_pos(group),
                    self._to_dof_vel(group),
                    forward_kinematic=True,
                    reset_overrides=False,
                )
        self._read()

    def _to_dof_pos(self, envs: np.ndarray) -> np.ndarray:
        dof = np.zeros((len(envs), self._dof_sizes[0]), dtype=np.float32)
        dof[:, self._pos_map] = self._qpos[envs]
        return dof

    def _to_dof_vel(self, envs: np.ndarray) -> np.ndarray:
        dof = np.zeros((len(envs), self._dof_sizes[1]), dtype=np.float32)
        dof[:, self._vel_map] = self._qvel[envs]
        return dof

    def step(self, ctrl: np.ndarray, object_force: np.ndarray | None = None) -> None:
        if object_force is not None and not self._object_force:
            raise RuntimeError("object_force was passed to a backend built with object_force=False")
        for group, data, scene in zip(self.groups, self.datas, self.scene_models, strict=True):
            if not len(group):
                continue
            data.actuator_ctrls = ctrl[group].astype(np.float32)
            force = None if object_force is None else object_force[group].astype(np.float32)
            if force is None or not force.any():
                scene.step_n(data, self.substeps)
                continue
            # MotrixSim clears external forces after every physics step; MuJoCo's xfrc_applied holds
            # for the whole control step, so apply the force before each substep.
            link = scene.links[self._object_link]
            for _ in range(self.substeps):
                link.add_external_force(data, force, local=False)
                scene.step(data)
        self._read()

    def _read(self) -> None:
        """Copy MotrixSim state of all groups into the MuJoCo-layout arrays; refresh sensors and health."""
        for group, data, scene, plan in zip(self.groups, self.datas, self.scene_models, self._plans, strict=True):
            if not len(group):
                continue
            self._qpos[group] = data.dof_pos[:, self._pos_map]
            self._qvel[group] = data.dof_vel[:, self._vel_map]
            for adr, site in plan.sites:
                self._sensordata[group, adr : adr + 3] = site.get_position(data)
            if plan.contact_sensors:
                values = np.asarray(scene.get_sensor_values(plan.contact_sensors, data))
                columns = plan.contact_adr[:, None] + np.arange(4)
                self._sensordata[group[:, None, None], columns] = values.reshape(len(group), -1, 4)
        finite = np.isfinite(self._qpos).all(axis=1) & np.isfinite(self._qvel).all(axis=1)
        self._diverged = ~finite | (np.abs(self._qvel) > MAX_SPEED).any(axis=1)

    # Domain randomisation through per-instance overrides ---------------------------------------------
    def _split(self, env_ids: np.ndarray):
        """(scale index, data, scene, rows in that scale's batch, rows in the caller's arrays) per scale touched."""
        env_ids = np.asarray(env_ids)
        for index, (group, data, scene) in enumerate(zip(self.groups, self.datas, self.scene_models, strict=True)):
            hit = np.isin(env_ids, group)
            if hit.any():
                yield index, data, scene, np.searchsorted(group, env_ids[hit]), np.flatnonzero(hit)

    def _geom_friction(self, index: int) -> np.ndarray:
        scene, data = self.scene_models[index], self.datas[index]
        return np.stack([geom.get_friction_override(data) for geom in scene.geoms], axis=-2)

    def set_actuator_gains(self, env_ids: np.ndarray, kp: np.ndarray, kd: np.ndarray) -> None:
        """Position servos are MJCF ``general`` actuators: force = kp ctrl - kp q - kd qdot."""
        for _, data, scene, rows, source in self._split(env_ids):
            for column, actuator in enumerate(scene.actuators):
                gain, stiffness = actuator.get_gain_override(data), actuator.get_stiffness_override(data)
                damping = actuator.get_damping_override(data)
                gain[rows], stiffness[rows], damping[rows] = kp[source, column], kp[source, column], kd[source, column]
                actuator.set_gain_override(data, gain)
                actuator.set_stiffness_override(data, stiffness)
                actuator.set_damping_override(data, damping)

    def set_friction_scale(self, env_ids: np.ndarray, scale: np.ndarray) -> None:
        for index, data, scene, rows, source in self._split(env_ids):
            nominal = self._nominal_friction[index]
            for column, geom in enumerate(scene.geoms):
                friction = geom.get_friction_override(data)
                friction[rows, 0] = nominal[rows, column, 0] * scale[source]
                geom.set_friction_override(data, friction)

    def set_object_mass(self, env_ids: np.ndarray, mass: np.ndarray) -> None:
        for _, data, scene, rows, source in self._split(env_ids):
            link = scene.links[self._object_link]
            masses, inertia = link.get_mass_override(data), link.get_inertia_override(data)
            ratio = mass[source] / masses[rows]
            masses[rows] = mass[source]
            inertia[rows] = inertia[rows] * ratio.reshape(-1, *([1] * (inertia.ndim - 1)))
            link.set_mass_override(data, masses)
            link.set_inertia_override(data, inertia)

    def set_object_com(self, env_ids: np.ndarray, offset: np.ndarray) -> None:
        for index, data, scene, rows, source in self._split(env_ids):
            link = scene.links[self._object_link]
            com = link.get_center_of_mass_override(data)
            com[rows] = self._nominal_com[index][rows] + offset[source]
            link.set_center_of_mass_override(data, com)

    def set_gravity(self, env_ids: np.ndarray, gravity: np.ndarray) -> None:
        for _, data, scene, rows, source in self._split(env_ids):
            current = scene.get_gravity_override(data)
            current[rows] = gravity[source]
            scene.set_gravity_override(data, current)


def load_scene(motrixsim, path: Path):
    """Load an MJCF file; MotrixSim's Rust panics (not ``Exception``) become a ``MotrixError``."""
    try:
        return motrixsim.load_model(str(path))
    except BaseException as error:  # pyo3 PanicException derives from BaseException
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise
        raise MotrixError(
            f"MotrixSim could not load the scene written to {path}: {type(error).__name__}: {error}. "
            "The same scene runs on --sim mujoco; report the model to MotrixSim or pick mujoco."
        ) from None

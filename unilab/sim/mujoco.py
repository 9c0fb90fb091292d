"""MuJoCo backend: N envs as one ``mujoco.batch.Batch``, whose state rows persist between control steps.

Each control step writes the controls into the batch's live rows and runs all envs and all substeps in
one call on MuJoCo's thread pool; nothing is copied in or out but the sensor readings. The rows hold the
whole integration state, so the solver's warm start carries over from one control step to the next, as
in one uninterrupted rollout (results equal a loop of ``mj_step`` over one MjData per env, bit for bit).
Envs share one compiled model per object scale until a domain-randomisation setter is first used; then
every env gets its own model copy.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import mujoco
import numpy as np
from mujoco.batch import Batch

from unilab.sim.base import BatchedBackend, contiguous_assignment
from unilab.sim.scene import OBJECT_BODY

BLOW_UPS = [int(mujoco.mjtWarning.__members__[name]) for name in ("mjWARN_BADQPOS", "mjWARN_BADQVEL", "mjWARN_BADQACC")]
"""Warnings MuJoCo raises when it resets a simulation whose state blew up."""


class MujocoBackend(BatchedBackend):
    """SimBackend on MuJoCo. ``models`` holds one compiled model per object scale (same sizes).

    ``diverged`` marks the envs that MuJoCo reset during the last step because their state blew up: its own
    guard (bad qpos/qvel/qacc) resets the data, warns, and steps on from the model's default state; the
    batch counts those warnings per env.
    """

    name = "mujoco"

    def __init__(
        self,
        models: Sequence[mujoco.MjModel],
        num_envs: int,
        substeps: int,
        num_threads: int | None = None,
        object_force: bool = False,
    ) -> None:
        super().__init__(num_envs, substeps, num_threads)
        self.scale_models = list(models)
        self.env_scale = contiguous_assignment(num_envs, len(self.scale_models))
        first = self.scale_models[0]
        self.timestep = float(first.opt.timestep)
        self.nq, self.nv, self.nu, self.nbody = first.nq, first.nv, first.nu, first.nbody
        self._env_models: list[mujoco.MjModel] | None = None
        self._object_body = first.body(OBJECT_BODY).id
        self._object_force = object_force
        self._data = mujoco.MjData(first)  # for mj_setConst
        self._batch = Batch(first, nsim=num_envs, nthread=self.num_threads)
        self._step_models = [self.scale_models[i] for i in self.env_scale]
        self._batch.set_models(self._step_models)
        self._models_edited = False  # a DR setter wrote into the env models: hand them to the batch again

        # Live views of the batch's state rows (writes are the next step's state) and its sensor output.
        self._time, self._qpos, self._qvel = (self._batch.bind(name) for name in ("time", "qpos", "qvel"))
        self._ctrl, self._warmstart = self._batch.bind("ctrl"), self._batch.bind("qacc_warmstart")
        self._xfrc = self._batch.bind("xfrc_applied")[:, self._object_body, :3] if object_force else None
        self._sensor_output = self._batch.bind("sensordata")
        self._sensordata = np.zeros((num_envs, first.nsensordata))
        self._position_sensors = position_sensor_columns(first)
        self._blow_up_counts = self._batch.warning[:, BLOW_UPS, 1]  # a copy: the counts before the last step
        self._diverged = np.zeros(num_envs, dtype=bool)
        self._stale_constants = np.zeros(num_envs, dtype=bool)  # envs whose mass or COM changed since mj_setConst
        self._refresh_sensors(np.arange(num_envs))

    def full_physics_state(self) -> np.ndarray:
        """(N, nstate) ``mjSTATE_FULLPHYSICS`` rows of every env (for ``mujoco.rollout`` comparisons)."""
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        states = np.zeros((self.num_envs, mujoco.mj_stateSize(self.scale_models[0], spec)))
        data = mujoco.MjData(self.scale_models[0])
        for env in range(self.num_envs):
            self._batch.get_data(env, data)
            mujoco.mj_getState(self.model_for_env(env), data, states[env], spec)
        return states

    def reset(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        self._time[env_ids] = 0.0
        self._qpos[env_ids] = qpos
        self._qvel[env_ids] = qvel
        self._warmstart[env_ids] = 0.0  # a new episode: no warm start from the one before
        self._refresh_sensors(env_ids)

    def _refresh_sensors(self, env_ids: np.ndarray) -> None:
        """Position sensors (fingertip frames) at the reset state; force sensors read 0 until the next step.

        Without it a reset env's ``sensordata`` would describe the state it left.
        """
        env_ids = np.asarray(env_ids).reshape(-1)
        if not len(env_ids):
            return
        self._hand_over_models()
        self._batch.forward(env_ids, stage=int(mujoco.mjtStage.mjSTAGE_POS))
        rows = np.zeros((len(env_ids), self._sensordata.shape[1]))
        rows[:, self._position_sensors] = self._sensor_output[env_ids][:, self._position_sensors]
        self._sensordata[env_ids] = rows

    def step(self, ctrl: np.ndarray, object_force: np.ndarray | None = None) -> None:
        self._hand_over_models()
        self._ctrl[:] = ctrl
        if object_force is not None:
            if self._xfrc is None:
                raise RuntimeError("object_force was passed to a backend built with object_force=False")
            self._xfrc[:] = object_force
        self._batch.step(nstep=self.substeps)
        np.copyto(self._sensordata, self._sensor_output)
        counts = self._batch.warning[:, BLOW_UPS, 1]
        self._diverged = (counts > self._blow_up_counts).any(axis=1)
        self._diverged |= ~(np.isfinite(self._qpos).all(axis=1) & np.isfinite(self._qvel).all(axis=1))
        self._blow_up_counts = counts

    def _hand_over_models(self) -> None:
        """Before the batch reads the env models: derived constants current, edited models handed over."""
        if self._stale_constants.any():
            self._refresh_constants()
        if self._models_edited:
            self._batch.set_models(self._step_models)
            self._models_edited = False

    # Domain randomisation -------------------------------------------------------------------------
    def env_models(self) -> list[mujoco.MjModel]:
        """One private model per env (created on first use; they start as copies of the scale models)."""
        if self._env_models is None:
            self._env_models = [copy.copy(self.scale_models[i]) for i in self.env_scale]
            self._step_models = self._env_models
            self._nominal_friction = [m.geom_friction[:, 0].copy() for m in self._env_models]
            body = self._object_body
            self._nominal_mass = np.array([m.body_mass[body] for m in self._env_models])
            self._nominal_inertia = np.stack([m.body_inertia[body].copy() for m in self._env_models])
            self._nominal_com = np.stack([m.body_ipos[body].copy() for m in self._env_models])
        self._models_edited = True  # every caller is about to write into them
        return self._env_models

    def set_actuator_gains(self, env_ids: np.ndarray, kp: np.ndarray, kd: np.ndarray) -> None:
        models = self.env_models()
        for row, env in enumerate(env_ids):
            models[env].actuator_gainprm[:, 0] = kp[row]
            models[env].actuator_biasprm[:, 1] = -kp[row]
            models[env].actuator_biasprm[:, 2] = -kd[row]

    def set_friction_scale(self, env_ids: np.ndarray, scale: np.ndarray) -> None:
        models = self.env_models()
        for row, env in enumerate(env_ids):
            models[env].geom_friction[:, 0] = self._nominal_friction[env] * scale[row]

    def set_object_mass(self, env_ids: np.ndarray, mass: np.ndarray) -> None:
        models = self.env_models()
        body = self._object_body
        for row, env in enumerate(env_ids):
            ratio = mass[row] / self._nominal_mass[env]
            models[env].body_mass[body] = mass[row]
            models[env].body_inertia[body] = self._nominal_inertia[env] * ratio
        self._stale_constants[env_ids] = True

    def set_object_com(self, env_ids: np.ndarray, offset: np.ndarray) -> None:
        if self.scale_models[0].body_simple[self._object_body]:
            raise RuntimeError(
                "the object was compiled as a MuJoCo 'simple' body, whose centre of mass cannot move: "
                "build the scene with build_scene(..., movable_object_com=True) to randomise it"
            )
        models = self.env_models()
        for row, env in enumerate(env_ids):
            models[env].body_ipos[self._object_body] = self._nominal_com[env] + offset[row]
        self._stale_constants[env_ids] = True

    def _refresh_constants(self) -> None:
        """Recompute what MuJoCo derives from masses and inertias at compile time (``mj_setConst``).

        A stale ``body_subtreemass`` misplaces the subtree centre of mass that the dynamics are
        expressed about: with the implicitfast integrator a Sharpa cylinder made 4x heavier blew
        up in 5 % of its control steps. Run once per changed env (mass and COM setters together),
        before the next step or model read: about 50 us per env, paid at reset only.
        """
        models = self.env_models()
        for env in np.flatnonzero(self._stale_constants):
            mujoco.mj_setConst(models[env], self._data)
        self._stale_constants[:] = False

    def set_gravity(self, env_ids: np.ndarray, gravity: np.ndarray) -> None:
        models = self.env_models()
        for row, env in enumerate(env_ids):
            models[env].opt.gravity[:] = gravity[row]

    def model_for_env(self, env: int) -> mujoco.MjModel:
        """The model env ``env`` is simulated with (its private copy once DR is in use)."""
        if self._stale_constants[env]:
            self._refresh_constants()
        return self._env_models[env] if self._env_models is not None else self.scale_models[self.env_scale[env]]


def position_sensor_columns(model: mujoco.MjModel) -> np.ndarray:
    """Columns of ``sensordata`` computed at the position stage (frames, positions), as a boolean mask."""
    mask = np.zeros(model.nsensordata, dtype=bool)
    for sensor in range(model.nsensor):
        if model.sensor_needstage[sensor] == mujoco.mjtStage.mjSTAGE_POS:
            start = model.sensor_adr[sensor]
            mask[start : start + model.sensor_dim[sensor]] = True
    return mask

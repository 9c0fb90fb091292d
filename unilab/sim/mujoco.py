"""MuJoCo backend: N envs as one (N, nstate) float64 array, stepped by one ``mujoco.rollout`` call.

Each control step runs all envs and all substeps in one call on a persistent thread pool. Envs
share one compiled model per object scale until a domain-randomisation setter is first used;
then every env gets its own model copy (``mujoco.rollout`` accepts one model per env).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import mujoco
import numpy as np
from mujoco import rollout

from unilab.cpu_share import default_num_threads
from unilab.sim.base import Capabilities, contiguous_assignment
from unilab.sim.scene import OBJECT_BODY

STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS


class MujocoBackend:
    """SimBackend on MuJoCo. ``models`` holds one compiled model per object scale (same sizes)."""

    name = "mujoco"
    capabilities = Capabilities(
        actuator_gains=True,
        friction_scale=True,
        object_mass=True,
        object_com=True,
        gravity=True,
        object_force=True,
        object_scale=True,
    )

    def __init__(
        self,
        models: Sequence[mujoco.MjModel],
        num_envs: int,
        substeps: int,
        num_threads: int | None = None,
        object_force: bool = False,
    ) -> None:
        if num_envs < 1 or substeps < 1:
            raise ValueError(f"num_envs and substeps must be >= 1, got {num_envs} and {substeps}")
        self.num_envs = num_envs
        self.substeps = substeps
        self.num_threads = num_threads or default_num_threads()
        self.scale_models = list(models)
        self.env_scale = contiguous_assignment(num_envs, len(self.scale_models))
        first = self.scale_models[0]
        self.timestep = float(first.opt.timestep)
        self.nq, self.nv, self.nu, self.nbody = first.nq, first.nv, first.nu, first.nbody
        self._env_models: list[mujoco.MjModel] | None = None
        self._step_models = [self.scale_models[i] for i in self.env_scale]
        self._object_body = first.body(OBJECT_BODY).id
        self._datas = [mujoco.MjData(first) for _ in range(self.num_threads)]
        self._pool = rollout.Rollout(nthread=self.num_threads)
        self._object_force = object_force
        control_spec = mujoco.mjtState.mjSTATE_CTRL
        if object_force:
            control_spec |= mujoco.mjtState.mjSTATE_XFRC_APPLIED
        self._control_spec = int(control_spec)
        ncontrol = mujoco.mj_stateSize(first, control_spec)
        nstate = mujoco.mj_stateSize(first, STATE_SPEC)

        # Preallocated buffers: the live state, the per-substep rollout outputs and the controls.
        self._state = np.zeros((num_envs, nstate))
        self._trajectory = np.zeros((num_envs, substeps, nstate))
        self._sensor_trajectory = np.zeros((num_envs, substeps, first.nsensordata))
        self._control = np.zeros((num_envs, substeps, ncontrol))
        self._xfrc_start = self.nu + 6 * self._object_body
        self._expected_time = np.zeros(num_envs)
        self._diverged = np.zeros(num_envs, dtype=bool)
        self._stale_constants = np.zeros(num_envs, dtype=bool)  # envs whose mass or COM changed since mj_setConst
        data = mujoco.MjData(first)
        mujoco.mj_forward(first, data)
        mujoco.mj_getState(first, data, self._state[0], STATE_SPEC)
        self._state[1:] = self._state[0]
        self._sensor_trajectory[:, -1] = data.sensordata
        self._qpos = self._state[:, 1 : 1 + self.nq]
        self._qvel = self._state[:, 1 + self.nq : 1 + self.nq + self.nv]

    # Read-only views into the state array.
    @property
    def qpos(self) -> np.ndarray:
        return self._qpos

    @property
    def qvel(self) -> np.ndarray:
        return self._qvel

    @property
    def sensordata(self) -> np.ndarray:
        return self._sensor_trajectory[:, -1]

    @property
    def state(self) -> np.ndarray:
        """(N, nstate) full physics state (time, qpos, qvel, act)."""
        return self._state

    @property
    def diverged(self) -> np.ndarray:
        """(N,) True where MuJoCo reset an env during the last step because its state blew up.

        MuJoCo's own guard (bad qpos/qvel/qacc) silently resets the data and restarts its clock,
        so an env whose simulated time did not advance by ``substeps * timestep`` diverged.
        """
        return self._diverged

    def reset(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        self._state[env_ids, 0] = 0.0
        self._qpos[env_ids] = qpos
        self._qvel[env_ids] = qvel
        self._refresh_sensors(env_ids)

    def _refresh_sensors(self, env_ids: np.ndarray) -> None:
        """Position sensors (fingertip frames) at the reset state; force sensors read 0 until the next step.

        Without it a reset env's ``sensordata`` would describe the state it left. About 20 us per env.
        """
        data = self._datas[0]
        for env in np.asarray(env_ids).reshape(-1):
            model = self.model_for_env(int(env))
            mujoco.mj_setState(model, data, self._state[env], STATE_SPEC)
            mujoco.mj_fwdPosition(model, data)
            data.sensordata[:] = 0.0
            mujoco.mj_sensorPos(model, data)
            self._sensor_trajectory[env, -1] = data.sensordata

    def step(self, ctrl: np.ndarray, object_force: np.ndarray | None = None) -> None:
        if self._stale_constants.any():
            self._refresh_constants()
        np.add(self._state[:, 0], self.substeps * self.timestep, out=self._expected_time)
        np.copyto(self._control[:, :, : self.nu], ctrl[:, None, :])
        if object_force is not None:
            if not self._object_force:
                raise RuntimeError("object_force was passed to a backend built with object_force=False")
            self._control[:, :, self._xfrc_start : self._xfrc_start + 3] = object_force[:, None, :]
        self._pool.rollout(
            self._step_models,
            self._datas,
            initial_state=self._state,
            control=self._control,
            control_spec=self._control_spec,
            skip_checks=True,
            nstep=self.substeps,
            state=self._trajectory,
            sensordata=self._sensor_trajectory,
        )
        np.copyto(self._state, self._trajectory[:, -1])
        self._diverged = np.abs(self._state[:, 0] - self._expected_time) > 0.5 * self.timestep
        self._diverged |= ~np.isfinite(self._state).all(axis=1)

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
        models, data = self.env_models(), self._datas[0]
        for env in np.flatnonzero(self._stale_constants):
            mujoco.mj_setConst(models[env], data)
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

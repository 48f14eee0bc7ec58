"""MAPPO for Ray RLlib (extra ``ray``): PPO with a centralised critic on the global state, decentralised actors.

MAPPO (Yu et al., 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games", NeurIPS Datasets
and Benchmarks) is PPO in which each agent's actor ``π(a | o_i)`` reads its own observation and the critic, used
only in training, reads the global state; centralised training with decentralised execution, after the
centralised critics of MADDPG (Lowe et al., 2017, "Multi-Agent Actor-Critic for Mixed Cooperative-Competitive
Environments", NIPS). RLlib ships no MAPPO, so it is PPO (``PPOConfig``, unchanged loss) with two pieces:

* :class:`StateObservationWrapper` gives agent ``i`` the observation ``x_i = concat(o_i, s)`` with
  ``s = env.state()`` (all agents' observations, see :class:`p2p_gym.envs.P2PMarketEnv`), so the state reaches
  the learner in the sample batch. Actions and rewards are unchanged.
* :class:`MAPPOTorchRLModule`: the actor MLP reads ``x_i[:obs_dim] = o_i`` and outputs the mean and log standard
  deviation of a diagonal Gaussian (as RLlib's default PPO module with ``free_log_std=False``); the critic MLP
  reads all of ``x_i``, the *agent-specific global state* of Yu et al. (2022, "Input Representation to Value
  Function"): ``s`` alone is the same for every agent, and a critic shared by all agents needs ``o_i`` to tell
  whose money it predicts (each agent is rewarded its own money). Both MLPs have ``hiddens`` tanh layers and no
  shared layers.

With ``setting: shared`` one module serves every agent (actor and critic parameters shared, as in MAPPO); with
``setting: independent`` every agent has its own actor and its own centralised critic. Evaluation plays the
actor on the plain environment's observation ``o_i`` (:class:`MAPPOActorPolicy`), never on ``s``.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from pettingzoo.utils.wrappers import BaseParallelWrapper
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import Tensor, nn


class StateObservationWrapper(BaseParallelWrapper):
    """A PettingZoo parallel env whose agents observe ``concat(o_i, env.state())``: float32[obs_dim_i + state_dim].

    The observation space of agent ``i`` is the Box of ``o_i`` followed by the Box of :attr:`state_space`; the
    state is read after ``reset`` and after each ``step``, so it belongs to the same instant as ``o_i``.
    """

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        state = env.state_space
        self._spaces = {}
        for agent in env.possible_agents:
            own = env.observation_space(agent)
            self._spaces[agent] = gymnasium.spaces.Box(
                np.concatenate([own.low, state.low]).astype(np.float32),
                np.concatenate([own.high, state.high]).astype(np.float32),
                dtype=np.float32,
            )

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._augment(obs), infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        return self._augment(obs), rewards, terminations, truncations, infos

    def _augment(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        state = np.asarray(self.env.state(), dtype=np.float32)
        return {a: np.concatenate([np.asarray(o, dtype=np.float32), state]) for a, o in obs.items()}


def _mlp(n_in: int, hiddens: list[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hiddens:
        layers += [nn.Linear(n_in, width), nn.Tanh()]
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class MAPPOTorchRLModule(TorchRLModule, ValueFunctionAPI):
    """Decentralised Gaussian actor on ``o_i``, centralised critic on ``concat(o_i, s)`` (for RLlib's PPO learner).

    Observations are ``x = concat(o_i, s)``: float32[B, obs_dim + state_dim] (:class:`StateObservationWrapper`).
    ``model_config``: ``obs_dim`` (length of ``o_i``, required) and ``hiddens`` (widths of the tanh layers of
    each MLP, default ``[64, 64]``). ``action_dist_inputs`` are ``concat(mean, log_std)``: float32[B, 2·act_dim]
    (RLlib's ``TorchDiagGaussian``).
    """

    def setup(self) -> None:
        self.obs_dim = int(self.model_config["obs_dim"])
        hiddens = [int(h) for h in self.model_config.get("hiddens", [64, 64])]
        n_in = int(self.observation_space.shape[0])
        if not 0 < self.obs_dim <= n_in:
            raise ValueError(f"obs_dim: must be in [1, {n_in}] (the observation length), got {self.obs_dim}")
        self.actor = _mlp(self.obs_dim, hiddens, 2 * int(np.prod(self.action_space.shape)))
        self.critic = _mlp(n_in, hiddens, 1)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.actor(batch[Columns.OBS][..., : self.obs_dim])}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> Tensor:
        """``V(o_i, s)``: float[B] (``embeddings`` is unused: the critic shares no layers with the actor)."""
        return self.critic(batch[Columns.OBS]).squeeze(-1)

    def actor_mean(self, obs: Tensor) -> Tensor:
        """The mean of the action distribution for local observations ``o_i``: float[B, obs_dim] -> [B, act_dim]."""
        out = self.actor(obs)
        return out[..., : out.shape[-1] // 2]


class MAPPOActorPolicy:
    """The actor of a trained :class:`MAPPOTorchRLModule` as an ``o_i -> action`` callable on the plain env's
    observation (the Gaussian mean clipped to [-1, 1], as :class:`training.rllib.RLModulePolicy` for PPO)."""

    def __init__(self, module: MAPPOTorchRLModule) -> None:
        self.module = module

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            mean = self.module.actor_mean(torch.as_tensor(np.asarray(obs, np.float32)[None]))[0].numpy()
        return np.clip(mean, -1.0, 1.0).astype(np.float32)


def module_spec(obs_dim: int, hiddens: list[int]) -> Any:
    """The ``RLModuleSpec`` of a :class:`MAPPOTorchRLModule` for agents with observations of length ``obs_dim``."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    return RLModuleSpec(
        module_class=MAPPOTorchRLModule, model_config={"obs_dim": obs_dim, "hiddens": list(hiddens)}
    )

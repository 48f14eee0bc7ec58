"""Ray RLlib training (extra ``ray``): PPO or MAPPO on the PettingZoo parallel env, shared or per-agent policies.

Uses RLlib's new API stack: the env is wrapped in
:class:`ray.rllib.env.wrappers.pettingzoo_env.ParallelPettingZooEnv`; ``setting: shared`` maps every agent to one
RLModule ``"shared"``, ``setting: independent`` gives each agent its own RLModule (named by agent id).
A local Ray cluster is started (``ray.init(num_cpus=ray_num_cpus)``) unless ``ray_address`` names an existing
one (e.g. ``ray://head:10001`` or ``auto``). Sampling runs in the driver (``num_env_runners=0``) on a local
cluster and in ``ray_num_cpus - 1`` remote env runners on an existing cluster.

``algo: mappo`` is the same PPO with a centralised critic (:mod:`training.rllib_mappo`, Yu et al. 2022): the env
is wrapped so that each agent observes ``concat(o_i, state)``, the actor reads ``o_i`` only and the critic all of
it; evaluation and :func:`load_policies` play the actor on ``o_i``.

Run directory: ``config.yaml``, ``progress.csv`` (one row per RLlib iteration), TensorBoard events,
``evaluations.csv`` (same baselines as stable-baselines3 runs), ``checkpoint/`` (``Algorithm.save_to_path``)
and ``checkpoints/step_<N>/``.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from p2p_gym.envs import parallel_env
from training.config import TrainArgs, TrainConfigError
from training.policies import ModelPolicy
from training.sb3 import EVAL_FILE, Evaluator

ENV_NAME = "p2p_gym_parallel"
STATE_ENV_NAME = "p2p_gym_parallel_state"  # agents observe concat(o_i, state) (mappo)
CHECKPOINT_DIR = "checkpoint"


def _make_env(env_config: dict[str, Any]) -> Any:
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    return ParallelPettingZooEnv(parallel_env(**dict(env_config)))


def _make_state_env(env_config: dict[str, Any]) -> Any:
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    from training.rllib_mappo import StateObservationWrapper

    return ParallelPettingZooEnv(StateObservationWrapper(parallel_env(**dict(env_config))))


def module_ids(args: TrainArgs, agent_ids: list[str]) -> dict[str, str]:
    """Agent id -> RLModule id (``"shared"`` for every agent, or the agent's own id)."""
    return {a: ("shared" if args.setting == "shared" else a) for a in agent_ids}


def build_config(args: TrainArgs) -> Any:
    """The ``PPOConfig`` of ``args`` (new API stack); ``algo: mappo`` delegates to :func:`build_mappo_config`."""
    if args.algo == "mappo":
        return build_mappo_config(args)
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    agent_ids = list(parallel_env(config=args.market).possible_agents)
    mapping = module_ids(args, agent_ids)
    policies = sorted(set(mapping.values()))
    hp = dict(args.resolved_hyperparams)
    hidden = list(hp.pop("net_arch"))
    remote = args.ray_address is not None
    return (
        PPOConfig()
        .environment(ENV_NAME, env_config=args.env_config)
        .env_runners(num_env_runners=max(0, args.ray_num_cpus - 1) if remote else 0)
        .multi_agent(policies=set(policies), policy_mapping_fn=lambda aid, *a, **k: mapping[aid])
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs={p: RLModuleSpec() for p in policies}),
            model_config=DefaultModelConfig(fcnet_hiddens=hidden, head_fcnet_hiddens=[]),
        )
        .training(**hp)
        .debugging(seed=args.seed)
    )


def build_mappo_config(args: TrainArgs) -> Any:
    """The ``PPOConfig`` of MAPPO: the state-augmented env and one :class:`~training.rllib_mappo.MAPPOTorchRLModule`
    per RLModule id (its ``obs_dim`` is the observation length of the agents it serves, which must agree)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec

    from training.rllib_mappo import module_spec

    env = parallel_env(config=args.market)
    mapping = module_ids(args, list(env.possible_agents))
    hp = dict(args.resolved_hyperparams)
    hidden = list(hp.pop("net_arch"))
    dims: dict[str, set[int]] = {}
    for agent, module in mapping.items():
        dims.setdefault(module, set()).add(int(env.observation_space(agent).shape[0]))
    for d in dims.values():
        if len(d) > 1:
            raise TrainConfigError(
                f"setting: 'shared' MAPPO needs one observation length for all agents, got {sorted(d)}; set "
                "market.pad_spaces=true or use setting 'independent'"
            )
    specs = {m: module_spec(d.pop(), hidden) for m, d in dims.items()}
    remote = args.ray_address is not None
    return (
        PPOConfig()
        .environment(STATE_ENV_NAME, env_config=args.env_config)
        .env_runners(num_env_runners=max(0, args.ray_num_cpus - 1) if remote else 0)
        .multi_agent(policies=set(specs), policy_mapping_fn=lambda aid, *a, **k: mapping[aid])
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs))
        .training(**hp)
        .debugging(seed=args.seed)
    )


def module_policy(args: TrainArgs, module: Any) -> Any:
    """The ``obs -> action`` callable of a trained module on the plain env's observation: :class:`RLModulePolicy`,
    or for ``algo: mappo`` its actor (:class:`~training.rllib_mappo.MAPPOActorPolicy`)."""
    if args.algo == "mappo":
        from training.rllib_mappo import MAPPOActorPolicy

        return MAPPOActorPolicy(module)
    return RLModulePolicy(module)


class RLModulePolicy:
    """A trained RLlib RLModule as an ``obs -> action`` callable (mean of the Gaussian, clipped to [-1, 1])."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.module.forward_inference({"obs": torch.as_tensor(np.asarray(obs, np.float32)[None])})
        dist_inputs = out["action_dist_inputs"][0].numpy()
        mean = dist_inputs[: dist_inputs.shape[0] // 2]
        return np.clip(mean, -1.0, 1.0).astype(np.float32)


def _init_ray(args: TrainArgs) -> None:
    import ray

    if ray.is_initialized():
        return
    if args.ray_address:
        from ray.exceptions import AuthenticationError

        try:
            ray.init(address=args.ray_address)
        except (AuthenticationError, ConnectionError) as exc:
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise TrainConfigError(
                f"ray_address: cannot connect to the Ray cluster at {args.ray_address!r} ({reason}); a cluster "
                "started by `ray start` (Ray >= 2.59) requires token authentication: set RAY_AUTH_MODE=token and "
                "its token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) here"
            ) from None
    else:
        ray.init(num_cpus=args.ray_num_cpus, include_dashboard=False, log_to_driver=False)


def train(args: TrainArgs) -> Path:
    """Train RLlib PPO or MAPPO according to ``args``; returns the run directory."""
    import ray
    import torch
    from ray.tune.registry import register_env
    from torch.utils.tensorboard import SummaryWriter

    torch.set_num_threads(args.torch_threads)
    run = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    args.save(run / "config.yaml")
    (run / EVAL_FILE).unlink(missing_ok=True)
    _init_ray(args)
    register_env(ENV_NAME, _make_env)
    register_env(STATE_ENV_NAME, _make_state_env)
    t0 = time.perf_counter()
    algo = build_config(args).build_algo()
    agent_ids = list(parallel_env(config=args.market).possible_agents)
    mapping = module_ids(args, agent_ids)
    evaluator = Evaluator(args, agent_ids, run / EVAL_FILE)
    writer = SummaryWriter(str(run))
    rows: list[dict[str, float]] = []
    steps, last_eval, last_ckpt, it = 0, 0, 0, 0
    try:
        while steps < args.timesteps:
            result = algo.train()
            it += 1
            runners = result.get("env_runners", {})
            steps = int(runners.get("num_env_steps_sampled_lifetime", steps))
            row = {
                "iteration": float(it),
                "timesteps": float(steps),
                "episode_return_mean": float(runners.get("episode_return_mean", np.nan)),
                "time_elapsed": time.perf_counter() - t0,
            }
            for aid, value in (runners.get("agent_episode_returns_mean") or {}).items():
                row[f"return/{aid}"] = float(value)
            rows.append(row)
            for key, value in row.items():
                writer.add_scalar(f"rollout/{key}", value, steps)
            done = steps >= args.timesteps
            if (args.eval_freq and steps - last_eval >= args.eval_freq) or done:
                last_eval = steps
                learned = {
                    a: ModelPolicy(module_policy(args, algo.get_module(mapping[a]))) for a in agent_ids
                }
                ev = evaluator.evaluate(learned, steps)
                for key, value in ev.items():
                    writer.add_scalar(f"eval/{key}", value, steps)
                print(
                    f"[{steps}/{args.timesteps}] "
                    + ", ".join(f"{k} {v:.4f}" for k, v in ev.items() if k != "timesteps")
                )
            if args.checkpoint_freq and steps - last_ckpt >= args.checkpoint_freq and not done:
                last_ckpt = steps
                algo.save_to_path(str((run / "checkpoints" / f"step_{steps}").resolve()))
        algo.save_to_path(str((run / CHECKPOINT_DIR).resolve()))
    finally:
        writer.close()
        algo.stop()
        _write_csv(run / "progress.csv", rows)
        if not args.ray_address:
            ray.shutdown()
    print(
        f"trained {args.run_name} ({steps} steps, {it} iterations) in {time.perf_counter() - t0:.1f} s -> {run}"
    )
    return run


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def load_policies(run: Path, args: TrainArgs) -> dict[str, ModelPolicy]:
    """The trained RLModule of every agent of an RLlib run (agent id -> policy); needs no running Ray cluster."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    agent_ids = list(parallel_env(config=args.market).possible_agents)
    mapping = module_ids(args, agent_ids)
    base = (run / CHECKPOINT_DIR / "learner_group" / "learner" / "rl_module").resolve()
    modules = {m: RLModule.from_checkpoint(str(base / m)) for m in set(mapping.values())}
    return {a: ModelPolicy(module_policy(args, modules[mapping[a]])) for a in agent_ids}

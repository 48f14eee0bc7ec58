"""BenchMARL training (extra ``marl``): MAPPO, IPPO, MADDPG and MASAC on TorchRL, shared or per-agent policies.

BenchMARL (Bettini et al. 2024, "BenchMARL: Benchmarking Multi-Agent Reinforcement Learning", JMLR 25(217)) runs
the multi-agent algorithms of TorchRL behind one ``Experiment``:

* **MAPPO** (Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games"): PPO with a
  centralised critic over the global state (:meth:`~p2p_gym.envs.P2PMarketEnv.state`), decentralised actors.
* **IPPO** (de Witt et al. 2020, "Is Independent Learning All You Need in the StarCraft Multi-Agent Challenge?"):
  PPO with a critic of the agent's own observation.
* **MADDPG** (Lowe et al. 2017, "Multi-Agent Actor-Critic for Mixed Cooperative-Competitive Environments"):
  deterministic actors, centralised Q-critics over the global state and all actions, Gaussian exploration noise.
* **MASAC**: soft actor-critic (Haarnoja et al. 2018, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep
  Reinforcement Learning with a Stochastic Actor") with BenchMARL's centralised Q-critics, as MADDPG's.

Critics follow BenchMARL's defaults: centralised for MAPPO, MADDPG and MASAC, local for IPPO, with parameters
shared over the agents (``share_param_critic``, a hyperparameter). The actors are Tanh-squashed (Gaussian for
MAPPO/IPPO/MASAC, deterministic for MADDPG) onto the action box [-1, 1].

All agents are one BenchMARL group ``"agents"``: ``setting: shared`` shares the actor's parameters over them
(``share_policy_params``), ``setting: independent`` gives each agent its own actor parameters (trained together,
in the same iterations). ``n_envs`` environment copies are stepped one after the other by a TorchRL ``SerialEnv``
(BenchMARL's ``n_envs_per_worker``), seeded ``seed``, ``seed + 1``, ...

**Timesteps are environment steps of the whole market** (BenchMARL's frames; one frame = one step of every agent),
as with RLlib: ``max_n_frames = timesteps``, and ``frames_per_batch`` frames are collected per iteration.

The env is wrapped in TorchRL's ``PettingZooWrapper`` (``return_state=True``) behind a thin PettingZoo wrapper
that hands it empty ``infos``: the market's per-agent infos are nested dicts, which TorchRL would deep-copy on every
step and cannot turn into tensors (its info spec comes from the empty infos of ``reset``, so it drops them anyway).

Run directory (as RLlib runs): ``config.yaml``, ``progress.csv`` (one row per iteration, appended as training runs:
``timesteps`` in frames, ``episode_return_mean`` the return summed over the agents as RLlib's, ``agent_return_mean``
and ``return/<agent>`` per agent, each a mean over the episodes that ended in the iteration's batch, ``time_elapsed``
the wall time since the start, of which ``time_eval`` was spent in evaluations), TensorBoard events,
``evaluations.csv`` (same baselines as stable-baselines3 runs), ``checkpoint/policy.pt`` (the actor's weights, the
losses' state and reference actions; :func:`load_policies` rebuilds the actor from ``config.yaml`` and checks it
against them), ``checkpoints/step_<N>/policy.pt`` and ``benchmarl/`` (BenchMARL's experiment folder, its
``config.pkl``). Evaluation and logging of BenchMARL itself are off; the run's own evaluator plays the deterministic
actor (the mean action, clipped to [-1, 1]) against the rule-based baselines.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from p2p_gym.envs import parallel_env
from training.config import TrainArgs, TrainConfigError
from training.policies import ModelPolicy

try:
    from benchmarl.environments.pettingzoo.common import PettingZooClass
    from benchmarl.experiment import Callback
    from pettingzoo.utils.wrappers import BaseParallelWrapper
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError("lib 'benchmarl' needs BenchMARL and TorchRL: pip install -e '.[marl]'") from err

GROUP = "agents"
CHECKPOINT_DIR = "checkpoint"
POLICY_FILE = "policy.pt"
PROGRESS_FILE = "progress.csv"
ON_POLICY = ("mappo", "ippo")
ACTIVATIONS = ("tanh", "relu")

#: Hyperparameters of the algorithm configs (the others go to BenchMARL's ``ExperimentConfig``).
_ALGO_HP = {
    "mappo": ("lmbda", "clip_epsilon", "entropy_coef", "critic_coef", "share_param_critic"),
    "ippo": ("lmbda", "clip_epsilon", "entropy_coef", "critic_coef", "share_param_critic"),
    "maddpg": ("share_param_critic",),
    "masac": ("share_param_critic",),
}


class _NoInfos(BaseParallelWrapper):
    """The market env with empty per-agent ``infos`` (what TorchRL's wrapper sees; see the module docstring)."""

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        obs, _ = self.env.reset(seed=seed, options=options)
        return obs, {a: {} for a in obs}

    def step(self, actions: dict[str, Any]) -> Any:
        obs, rewards, terminations, truncations, _ = self.env.step(actions)
        return obs, rewards, terminations, truncations, {a: {} for a in obs}


class MarketTask(PettingZooClass):
    """The market as a BenchMARL task (continuous actions, global state, no rendering).

    ``config``: ``env_config`` (keyword arguments of :func:`p2p_gym.parallel_env`) and ``max_steps`` (the episode
    length). The specs come from TorchRL's ``PettingZooWrapper`` via BenchMARL's PettingZoo task class. The k-th
    env made by one env function is seeded ``seed + k``, so ``n_envs`` copies play different days.
    """

    def get_env_fun(
        self, num_envs: int, continuous_actions: bool, seed: int | None, device: Any
    ) -> Callable[[], Any]:
        from torchrl.envs.libs.pettingzoo import PettingZooWrapper

        env_config = dict(self.config["env_config"])
        counter = itertools.count()

        def make() -> Any:
            k = next(counter)
            env = parallel_env(**env_config)
            with warnings.catch_warnings():  # TorchRL names the PettingZoo version it was tested with
                warnings.filterwarnings("ignore", message="PettingZoo in TorchRL is tested")
                return PettingZooWrapper(
                    env=_NoInfos(env),
                    return_state=True,
                    group_map={GROUP: list(env.possible_agents)},
                    categorical_actions=False,
                    seed=None if seed is None else seed + k,
                    device=device,
                )

        return make

    def supports_continuous_actions(self) -> bool:
        return True

    def supports_discrete_actions(self) -> bool:
        return False

    def has_state(self) -> bool:
        return True

    def has_render(self, env: Any) -> bool:
        return False

    def max_steps(self, env: Any) -> int:
        return int(self.config["max_steps"])

    @staticmethod
    def env_name() -> str:
        return "p2p_gym"


def make_task(args: TrainArgs) -> MarketTask:
    """The BenchMARL task of ``args``'s market."""
    return MarketTask(
        name="P2P_MARKET",
        config={"env_config": args.env_config, "max_steps": args.market.episode_steps},
    )


def build_configs(args: TrainArgs) -> tuple[Any, Any, Any]:
    """BenchMARL's ``(ExperimentConfig, algorithm config, MlpConfig)`` of ``args`` (no env is built).

    Mapping of the resolved hyperparameters: ``lr``, ``gamma``, ``polyak_tau`` and ``max_grad_norm``
    (``clip_grad_val``, a norm) to the experiment; ``frames_per_batch``, ``minibatch_size``, ``n_minibatch_iters``
    (passes over the batch) to ``on_policy_*``; ``frames_per_batch``, ``memory_size``, ``train_batch_size``,
    ``n_optimizer_steps`` to ``off_policy_*``; ``exploration_eps`` (MADDPG: the initial standard deviation of the
    exploration noise, annealed to 0.01 over the first third of training) to ``exploration_eps_init``;
    ``n_envs`` to ``*_n_envs_per_worker``; ``lmbda``, ``clip_epsilon``, ``entropy_coef``, ``critic_coef`` and
    ``share_param_critic`` to the algorithm; ``net_arch`` and ``activation`` (``tanh`` or ``relu``) to the MLP of
    actor and critics.

    Raises:
        TrainConfigError: a hyperparameter that does not apply to the algorithm or has a bad value.
    """
    import torch
    from benchmarl.algorithms import IppoConfig, MaddpgConfig, MappoConfig, MasacConfig
    from benchmarl.experiment import ExperimentConfig
    from benchmarl.models import MlpConfig

    algo = args.algo
    on_policy = algo in ON_POLICY
    hp = dict(args.resolved_hyperparams)
    _check_hyperparams(args, hp)
    cfg = ExperimentConfig.get_from_yaml()
    cfg.sampling_device = cfg.train_device = cfg.buffer_device = args.device
    cfg.share_policy_params = args.setting == "shared"
    cfg.prefer_continuous_actions = True
    cfg.lr = float(hp["lr"])
    cfg.gamma = float(hp["gamma"])
    if "max_grad_norm" in hp:
        cfg.clip_grad_norm = True
        cfg.clip_grad_val = None if hp["max_grad_norm"] is None else float(hp["max_grad_norm"])
    cfg.max_n_iters = None
    cfg.max_n_frames = int(args.timesteps)
    frames = int(hp["frames_per_batch"])
    if on_policy:
        cfg.on_policy_collected_frames_per_batch = frames
        cfg.on_policy_n_envs_per_worker = int(args.n_envs)
        cfg.on_policy_minibatch_size = int(hp["minibatch_size"])
        cfg.on_policy_n_minibatch_iters = int(hp["n_minibatch_iters"])
    else:
        cfg.off_policy_collected_frames_per_batch = frames
        cfg.off_policy_n_envs_per_worker = int(args.n_envs)
        cfg.off_policy_memory_size = int(hp["memory_size"])
        cfg.off_policy_train_batch_size = int(hp["train_batch_size"])
        cfg.off_policy_n_optimizer_steps = int(hp["n_optimizer_steps"])
        cfg.off_policy_init_random_frames = 0
        cfg.off_policy_use_prioritized_replay_buffer = False  # TorchRL's C++ extension is needed for it
        cfg.polyak_tau = float(hp["polyak_tau"])
        if "exploration_eps" in hp:
            cfg.exploration_eps_init = float(hp["exploration_eps"])
    # BenchMARL's own evaluation, loggers and checkpoints are off: the run's evaluator and checkpoints replace them.
    cfg.evaluation = False
    cfg.render = False
    cfg.evaluation_episodes = 1
    cfg.loggers = []
    cfg.create_json = False
    cfg.checkpoint_interval = 0
    cfg.checkpoint_at_end = False
    cfg.keep_checkpoints_num = None
    cfg.exclude_buffer_from_checkpoint = True
    cfg.save_folder = str((args.run_dir / "benchmarl").resolve())

    algo_cls = {"mappo": MappoConfig, "ippo": IppoConfig, "maddpg": MaddpgConfig, "masac": MasacConfig}[algo]
    algo_cfg = algo_cls.get_from_yaml()
    for key in _ALGO_HP[algo]:
        if key in hp:
            setattr(algo_cfg, key, type(getattr(algo_cfg, key))(hp[key]))
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[hp.get("activation", "tanh")]
    model_cfg = MlpConfig(
        num_cells=[int(n) for n in hp["net_arch"]], layer_class=torch.nn.Linear, activation_class=activation
    )
    return cfg, algo_cfg, model_cfg


def _check_hyperparams(args: TrainArgs, hp: dict[str, Any]) -> None:
    """Reject values BenchMARL would fail on later (or silently ignore), naming the key."""
    algo = args.algo
    if "critic_coef" in hp and algo not in ON_POLICY:
        raise TrainConfigError(f"hyperparams: critic_coef applies to mappo and ippo, not {algo!r}")
    if "exploration_eps" in hp and algo != "maddpg":
        raise TrainConfigError(f"hyperparams: exploration_eps applies to maddpg, not {algo!r}")
    if hp.get("activation", "tanh") not in ACTIVATIONS:
        raise TrainConfigError(
            f"hyperparams: activation: expected one of {list(ACTIVATIONS)}, got {hp['activation']!r}"
        )
    net_arch = hp["net_arch"]
    if not isinstance(net_arch, (list, tuple)) or not all(isinstance(n, int) and n >= 1 for n in net_arch):
        raise TrainConfigError(f"hyperparams: net_arch: expected a list of layer sizes ≥ 1, got {net_arch!r}")
    sizes = ["frames_per_batch"]
    sizes += ["minibatch_size", "n_minibatch_iters"] if algo in ON_POLICY else []
    sizes += [] if algo in ON_POLICY else ["memory_size", "train_batch_size", "n_optimizer_steps"]
    for key in sizes:
        if not isinstance(hp[key], int) or hp[key] < 1:
            raise TrainConfigError(f"hyperparams: {key}: must be an integer ≥ 1, got {hp[key]!r}")
    if hp["frames_per_batch"] % args.n_envs:
        raise TrainConfigError(
            f"hyperparams: frames_per_batch ({hp['frames_per_batch']}) must be a multiple of n_envs "
            f"({args.n_envs}): each of the n_envs copies collects frames_per_batch / n_envs steps per iteration"
        )
    if algo in ON_POLICY and hp["minibatch_size"] > hp["frames_per_batch"]:
        raise TrainConfigError(
            f"hyperparams: minibatch_size ({hp['minibatch_size']}) must be ≤ frames_per_batch "
            f"({hp['frames_per_batch']})"
        )
    for key in ("lr", "gamma"):
        if not 0 < float(hp[key]) <= 1:
            raise TrainConfigError(f"hyperparams: {key}: must be in (0, 1], got {hp[key]!r}")
    if "polyak_tau" in hp and not 0 < float(hp["polyak_tau"]) <= 1:
        raise TrainConfigError(f"hyperparams: polyak_tau: must be in (0, 1], got {hp['polyak_tau']!r}")


# ------------------------------------------------------------------------------------------------ policies
class GroupActorPolicy:
    """One agent's deterministic action from the group's BenchMARL actor: ``obs -> action`` (the mean of the
    Tanh-squashed Gaussian, or MADDPG's deterministic action), clipped to [-1, 1].

    The actor maps the observations of all agents of the group (float[n_agents, obs_dim]) to their actions; each
    agent's action depends only on its own observation (decentralised actor), so the agent's observation is fed in
    every row and row ``index`` is read.
    """

    def __init__(self, actor: Any, index: int, n_agents: int) -> None:
        self.actor = actor
        self.index = index
        self.n_agents = n_agents

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.broadcast_to(np.asarray(obs, np.float32), (self.n_agents, *np.shape(obs)))
        return group_actions(self.actor, x)[self.index]


def group_actions(actor: Any, obs: np.ndarray) -> np.ndarray:
    """The actor's deterministic actions float[n_agents, act_dim] for the observations float[n_agents, obs_dim]."""
    import torch
    from tensordict import TensorDict
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    td = TensorDict(
        {GROUP: TensorDict({"observation": torch.as_tensor(np.array(obs, np.float32))}, [len(obs)])}
    )
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        action = actor(td).get((GROUP, "action")).numpy()
    return np.clip(action, -1.0, 1.0).astype(np.float32)


def _policies(actor: Any, agent_ids: list[str]) -> dict[str, ModelPolicy]:
    return {a: ModelPolicy(GroupActorPolicy(actor, i, len(agent_ids))) for i, a in enumerate(agent_ids)}


def _reference_obs(args: TrainArgs) -> np.ndarray:
    """Observations float[n_agents, obs_dim] the saved reference actions are computed on (the first of an
    evaluation episode)."""
    env = parallel_env(config=args.market)
    try:
        obs, _ = env.reset(seed=args.seed + 1_000_000)
        return np.stack([np.asarray(obs[a], np.float32) for a in env.possible_agents])
    finally:
        env.close()


def _save_policy(path: Path, experiment: Any, args: TrainArgs, agent_ids: list[str], frames: int) -> None:
    import torch

    actor = experiment.algorithm.get_policy_for_loss(GROUP)
    ref_obs = _reference_obs(args)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "algo": args.algo,
            "setting": args.setting,
            "group": GROUP,
            "agents": agent_ids,
            "frames": frames,
            "actor": actor.state_dict(),
            "losses": {g: loss.state_dict() for g, loss in experiment.losses.items()},
            "reference_obs": ref_obs,
            "reference_actions": group_actions(actor, ref_obs),
        },
        path / POLICY_FILE,
    )


def build_actor(args: TrainArgs) -> Any:
    """A fresh actor of ``args``'s algorithm and market (as BenchMARL builds it, untrained); the global torch RNG
    is left as it was."""
    import torch

    cfg, algo_cfg, model_cfg = build_configs(args)
    critic_cfg = copy.deepcopy(model_cfg)
    critic_cfg.is_critic = True
    task = make_task(args)
    env = task.get_env_fun(1, True, args.seed, args.device)()
    try:
        # The parts of an Experiment that an Algorithm reads to build its networks.
        experiment = SimpleNamespace(
            config=cfg,
            model_config=model_cfg,
            critic_model_config=critic_cfg,
            algorithm_config=algo_cfg,
            on_policy=algo_cfg.on_policy(),
            group_map=task.group_map(env),
            observation_spec=task.observation_spec(env),
            action_spec=task.action_spec(env),
            state_spec=task.state_spec(env),
            action_mask_spec=task.action_mask_spec(env),
        )
        with torch.random.fork_rng(devices=[]):
            return algo_cfg.get_algorithm(experiment=experiment).get_policy_for_loss(GROUP)
    finally:
        env.close()


def load_policies(run: Path, args: TrainArgs) -> dict[str, ModelPolicy]:
    """The trained actor of every agent of a BenchMARL run (agent id -> deterministic policy).

    Rebuilds the actor from ``args`` and loads ``checkpoint/policy.pt``; raises ``RuntimeError`` if it does not
    reproduce the reference actions saved with it (e.g. a checkpoint of another BenchMARL/TorchRL version).
    """
    import torch

    state = torch.load(run / CHECKPOINT_DIR / POLICY_FILE, map_location=args.device, weights_only=False)
    actor = build_actor(args)
    actor.load_state_dict(state["actor"])
    actions = group_actions(actor, state["reference_obs"])
    if not np.allclose(actions, state["reference_actions"], atol=1e-5):
        raise RuntimeError(
            f"{run / CHECKPOINT_DIR / POLICY_FILE}: the rebuilt actor does not reproduce the saved reference actions "
            f"(max difference {np.abs(actions - state['reference_actions']).max():.2e}); was the run trained with "
            "other BenchMARL/TorchRL versions or another config.yaml?"
        )
    return _policies(actor, list(state["agents"]))


# ------------------------------------------------------------------------------------------------ training
class _Iterations(Callback):
    """Per BenchMARL iteration: progress row, TensorBoard, periodic evaluation and checkpoints."""

    def __init__(self, args: TrainArgs, agent_ids: list[str], writer: Any, bar: Any, t0: float) -> None:
        super().__init__()
        from training.sb3 import EVAL_FILE, Evaluator

        self.args = args
        self.agent_ids = agent_ids
        self.writer = writer
        self.bar = bar
        self.evaluator = Evaluator(args, agent_ids, args.run_dir / EVAL_FILE)
        self.progress = _CsvAppender(
            args.run_dir / PROGRESS_FILE,
            ["iteration", "timesteps", "episode_return_mean", "agent_return_mean", "episodes", "time_elapsed",
             "time_eval", *(f"return/{a}" for a in agent_ids)],
        )  # fmt: skip
        self.t0 = t0
        self.time_eval = 0.0
        self.iteration = 0
        self.last_eval = self.last_ckpt = 0
        self.returns = np.full(len(agent_ids), np.nan)
        self.episodes = 0

    def __getstate__(self) -> dict[str, Any]:
        """Nothing: BenchMARL pickles the callbacks into its ``config.pkl``; these hold a writer and a bar."""
        return {}

    def on_batch_collected(self, batch: Any) -> None:
        done = batch.get(("next", "done")).reshape(-1).numpy()
        ep = batch.get(("next", GROUP, "episode_reward")).reshape(done.shape[0], len(self.agent_ids)).numpy()
        self.episodes = int(done.sum())
        self.returns = ep[done].mean(axis=0) if self.episodes else np.full(len(self.agent_ids), np.nan)

    def on_train_end(self, training_td: Any, group: str) -> None:
        exp = self.experiment
        assert exp is not None  # set by BenchMARL before the first iteration
        self.iteration += 1
        frames = int(exp.total_frames)
        row: dict[str, float] = {
            "iteration": float(self.iteration),
            "timesteps": float(frames),
            "episode_return_mean": float(self.returns.sum()) if self.episodes else math.nan,
            "agent_return_mean": float(self.returns.mean()) if self.episodes else math.nan,
            "episodes": float(self.episodes),
            "time_elapsed": time.perf_counter() - self.t0,
            "time_eval": self.time_eval,
        }
        row.update({f"return/{a}": float(r) for a, r in zip(self.agent_ids, self.returns)})
        self.progress.append(row)
        for key, value in row.items():
            self.writer.add_scalar(f"rollout/{key}", value, frames)
        for key, value in training_td.items():
            self.writer.add_scalar(f"train/{key}", float(value.float().mean()), frames)
        self.bar.update(min(frames, self.args.timesteps) - self.bar.n)
        if not math.isnan(row["episode_return_mean"]):
            self.bar.set_postfix(agent_return=f"{row['agent_return_mean']:.3f}", refresh=False)
        done = self.iteration >= exp.config.get_max_n_iters(exp.on_policy)
        if (self.args.eval_freq and frames - self.last_eval >= self.args.eval_freq) or done:
            self.last_eval = frames
            t = time.perf_counter()
            actor = exp.algorithm.get_policy_for_loss(GROUP)
            ev = self.evaluator.evaluate(_policies(actor, self.agent_ids), frames)
            self.time_eval += time.perf_counter() - t
            for key, value in ev.items():
                self.writer.add_scalar(f"eval/{key}", value, frames)
            self.bar.write(
                f"[{frames}/{self.args.timesteps}] "
                + ", ".join(f"{k} {v:.4f}" for k, v in ev.items() if k != "timesteps")
            )
        if self.args.checkpoint_freq and frames - self.last_ckpt >= self.args.checkpoint_freq and not done:
            self.last_ckpt = frames
            _save_policy(
                self.args.run_dir / "checkpoints" / f"step_{frames}", exp, self.args, self.agent_ids, frames
            )


class _CsvAppender:
    """A CSV file with fixed columns, one row appended (and flushed) per call, so it can be read during training."""

    def __init__(self, path: Path, fieldnames: list[str]) -> None:
        self.path = path
        self.fieldnames = fieldnames
        with path.open("w", newline="") as f:
            csv.DictWriter(f, fieldnames=fieldnames).writeheader()

    def append(self, row: dict[str, float]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fieldnames).writerow(row)


@contextlib.contextmanager
def _quiet_benchmarl() -> Iterator[None]:
    """BenchMARL's own iteration bar off (the run shows one in frames) and its expected warnings silenced."""
    import benchmarl.experiment.experiment as bm_experiment
    from tqdm import tqdm

    def no_bar(*a: Any, **k: Any) -> Any:
        return tqdm(*a, **{**k, "disable": True})

    original = bm_experiment.tqdm
    logger = logging.getLogger("torchrl")
    level = logger.level
    bm_experiment.tqdm = no_bar
    logger.setLevel(logging.WARNING)  # not its INFO line per replay buffer
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No episode terminated this iteration")
            warnings.filterwarnings("ignore", message="SyncDataCollector has been deprecated")
            yield
    finally:
        bm_experiment.tqdm = original
        logger.setLevel(level)


def train(args: TrainArgs) -> Path:
    """Train a BenchMARL algorithm according to ``args``; returns the run directory."""
    import torch
    from benchmarl.experiment import Experiment
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    from training.sb3 import EVAL_FILE

    cfg, algo_cfg, model_cfg = build_configs(args)  # validates before anything is written
    torch.set_num_threads(args.torch_threads)
    run = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    (run / "benchmarl").mkdir(exist_ok=True)
    args.save(run / "config.yaml")
    (run / EVAL_FILE).unlink(missing_ok=True)
    agent_ids = list(parallel_env(config=args.market).possible_agents)
    t0 = time.perf_counter()
    writer = SummaryWriter(str(run))
    bar = tqdm(total=args.timesteps, unit="step", disable=not args.progress)
    hooks = _Iterations(args, agent_ids, writer, bar, t0)
    try:
        with _quiet_benchmarl():
            experiment = Experiment(
                task=make_task(args),
                algorithm_config=algo_cfg,
                model_config=model_cfg,
                critic_model_config=copy.deepcopy(model_cfg),
                seed=args.seed,
                config=cfg,
                callbacks=[hooks],
            )
            experiment.run()
        _save_policy(run / CHECKPOINT_DIR, experiment, args, agent_ids, int(experiment.total_frames))
    finally:
        bar.close()
        writer.close()
    print(
        f"trained {args.run_name} ({experiment.total_frames} steps, {hooks.iteration} iterations) in "
        f"{time.perf_counter() - t0:.1f} s -> {run}"
    )
    return run

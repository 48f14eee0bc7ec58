"""stable-baselines3 training in the three settings (shared, independent, single).

Run directory layout::

    runs/NAME/config.yaml          resolved arguments (``p2p-gym train --config`` repeats the run)
    runs/NAME/model.zip            the policy (shared, single)
    runs/NAME/vecnormalize.pkl     normalisation statistics (with --normalize-obs/--normalize-reward)
    runs/NAME/agents/<id>/...      independent: one model.zip (+ vecnormalize.pkl, logs) per agent
    runs/NAME/progress.csv         SB3 training log (also TensorBoard events in the same folder)
    runs/NAME/evaluations.csv      periodic evaluation against the rule-based baselines
    runs/NAME/checkpoints/         model checkpoints

**Independent learners** are trained round-robin: in each of ``rounds`` rounds, every agent's model trains
``timesteps / rounds`` steps in a :class:`~p2p_gym.wrappers.SingleAgentEnv` where the other agents play their own
models' current (deterministic) policies, frozen during that chunk. Each learner thus faces a stationary
environment while it trains, and the population co-adapts between chunks.
"""

from __future__ import annotations

import csv
import pickle
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from p2p_gym.envs import parallel_env
from p2p_gym.wrappers import SingleAgentEnv, batched_vec_env
from training.config import TrainArgs
from training.policies import ModelPolicy, PlayResult, mixed_factory, play, rule_policy

MODEL_FILE = "model.zip"
VECNORM_FILE = "vecnormalize.pkl"
EVAL_FILE = "evaluations.csv"


def algo_class(algo: str) -> Any:
    """The stable-baselines3 class of ``algo``."""
    import stable_baselines3 as sb3

    return {"ppo": sb3.PPO, "a2c": sb3.A2C, "sac": sb3.SAC, "td3": sb3.TD3}[algo]


def model_kwargs(args: TrainArgs, n_actions: int) -> dict[str, Any]:
    """Constructor keyword arguments of the SB3 model from the resolved hyperparameters."""
    import torch

    hp = dict(args.resolved_hyperparams)
    policy_kwargs: dict[str, Any] = {"net_arch": list(hp.pop("net_arch"))}
    if "activation" in hp:
        policy_kwargs["activation_fn"] = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[hp.pop("activation")]
    if "log_std_init" in hp:
        policy_kwargs["log_std_init"] = hp.pop("log_std_init")
    if "action_noise_std" in hp:
        from stable_baselines3.common.noise import NormalActionNoise

        std = float(hp.pop("action_noise_std"))
        hp["action_noise"] = (
            NormalActionNoise(np.zeros(n_actions), std * np.ones(n_actions)) if std > 0 else None
        )
    return {**hp, "policy_kwargs": policy_kwargs, "seed": args.seed, "device": args.device, "verbose": 0}


def log_interval(args: TrainArgs, num_envs: int) -> int:
    """SB3 ``log_interval``: every PPO iteration, ≈ every 512 A2C steps, every batch of episodes (off-policy)."""
    if args.algo == "ppo":
        return 1
    if args.algo == "a2c":
        return max(1, 512 // (int(args.resolved_hyperparams["n_steps"]) * num_envs))
    return num_envs


# ----------------------------------------------------------------------------------------------- callbacks
def _callbacks() -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class TqdmCallback(BaseCallback):
        """Progress bar over environment steps (tqdm; SB3's own bar needs ``rich``)."""

        def __init__(self, bar: Any) -> None:
            super().__init__()
            self.bar = bar

        def _on_step(self) -> bool:
            self.bar.update(self.training_env.num_envs)
            return True

    class BaselineEvalCallback(BaseCallback):
        """Every ``eval_freq`` steps (and at the end), evaluate the learned policies against the baselines."""

        def __init__(self, evaluator: Evaluator, learned: Any, eval_freq: int) -> None:
            super().__init__()
            self.evaluator = evaluator
            self.learned = learned
            self.eval_freq = eval_freq
            self._last = 0

        def _on_step(self) -> bool:
            if self.eval_freq and self.num_timesteps - self._last >= self.eval_freq:
                self._evaluate()
            return True

        def _on_training_end(self) -> None:
            if self.num_timesteps != self._last:
                self._evaluate()

        def _evaluate(self) -> None:
            self._last = self.num_timesteps
            row = self.evaluator.evaluate(self.learned(), self.num_timesteps)
            for key, value in row.items():
                if key != "timesteps":
                    self.logger.record(f"eval/{key}", value)
            self.logger.dump(self.num_timesteps)

    return TqdmCallback, BaselineEvalCallback


class Evaluator:
    """Mean episode reward of the learned policies in their slots vs the same slots played by rule-based
    baselines (the other slots keep their policies), appended to ``evaluations.csv``.

    ``single``: the learner's slot, others play ``args.others``; ``shared``/``independent``: all slots are
    learned, so a baseline is the whole population playing that rule. Episodes are seeded from
    ``args.eval_seed`` (default ``args.seed + 1_000_000``) so every evaluation plays the same days, in the market
    ``args.market`` with ``args.eval_market`` applied; baselines are computed once. Columns: ``timesteps``,
    ``learner`` (mean episode reward of the learned slots), ``gains`` (the community's mean gains from trade per
    episode with the learned policies, :attr:`~training.policies.PlayResult.gains`), ``welfare`` (the mean Σ_t
    welfare per episode, :attr:`~training.policies.PlayResult.welfare`), ``eval_seconds`` (wall time
    spent evaluating so far, to separate training speed from evaluation) and one per baseline.
    """

    def __init__(self, args: TrainArgs, learned_slots: list[str], path: Path) -> None:
        self.args = args
        self.slots = learned_slots
        self.path = path
        self.seed = args.seed + 1_000_000 if args.eval_seed is None else int(args.eval_seed)
        self.market = args.market.replace(**args.eval_market)
        self._baselines: dict[str, PlayResult] | None = None
        self.rows: list[dict[str, float]] = []
        self.last: PlayResult | None = None
        self.seconds = 0.0  # wall time spent in evaluate() so far

    def baselines(self) -> dict[str, PlayResult]:
        """Per baseline name, the play result with the learned slots played by that rule (cached)."""
        if self._baselines is None:
            self._baselines = {
                name: play(
                    self.market,
                    mixed_factory(dict.fromkeys(self.slots), self.args.others, fill_learned_slots=name),
                    self.args.eval_episodes,
                    self.seed,
                )
                for name in self.args.eval_baselines
            }
        return self._baselines

    def evaluate(self, learned: Mapping[str, Any], timesteps: int) -> dict[str, float]:
        """Play the learned policies; append and return the row (timesteps, learner, one column per baseline)."""
        t0 = time.perf_counter()
        result = play(
            self.market, mixed_factory(learned, self.args.others), self.args.eval_episodes, self.seed
        )
        self.seconds += time.perf_counter() - t0
        self.last = result
        row: dict[str, float] = {"timesteps": float(timesteps), "learner": result.mean_over(self.slots)}
        row["gains"] = float(np.mean(result.gains))
        row["welfare"] = float(np.mean(result.welfare))
        row["eval_seconds"] = self.seconds
        for name, base in self.baselines().items():
            row[name] = base.mean_over(self.slots)
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.rows.append(row)
        return row


# ----------------------------------------------------------------------------------------------- envs
def _wrap(venv: Any, args: TrainArgs) -> Any:
    from stable_baselines3.common.vec_env import VecNormalize

    if args.normalize_obs or args.normalize_reward:
        gamma = float(args.resolved_hyperparams.get("gamma", 0.99))
        return VecNormalize(venv, norm_obs=args.normalize_obs, norm_reward=args.normalize_reward, gamma=gamma)
    return venv


def _single_vec_env(args: TrainArgs, agent: str, others: Any) -> Any:
    """DummyVecEnv of ``n_envs`` SingleAgentEnv copies (``others``: a rule name or a dict of policies)."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    def make() -> Any:
        env = parallel_env(config=args.market)
        pol = (
            others
            if isinstance(others, Mapping)
            else {a: rule_policy(others, env, a) for a in env.possible_agents if a != agent}
        )
        return Monitor(SingleAgentEnv(env, agent, pol))

    return _wrap(DummyVecEnv([make for _ in range(args.n_envs)]), args)


def _shared_vec_env(args: TrainArgs) -> Any:
    from stable_baselines3.common.vec_env import VecMonitor

    # The n_envs episodes are stepped together by the vector env (one simulation step for the whole batch).
    venv = batched_vec_env(args.n_envs, args.seed, config=args.market)
    return _wrap(VecMonitor(venv), args)


def _normalizer(venv: Any) -> Any:
    from stable_baselines3.common.vec_env import VecNormalize

    return venv if isinstance(venv, VecNormalize) else None


# ----------------------------------------------------------------------------------------------- train
def train(args: TrainArgs) -> Path:
    """Train with stable-baselines3 according to ``args``; returns the run directory."""
    import torch

    torch.set_num_threads(args.torch_threads)
    run = args.run_dir
    run.mkdir(parents=True, exist_ok=True)
    args.save(run / "config.yaml")
    (run / EVAL_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    if args.setting == "independent":
        _train_independent(args, run)
    else:
        _train_one(args, run)
    print(f"trained {args.run_name} ({args.timesteps} steps) in {time.perf_counter() - t0:.1f} s -> {run}")
    return run


def _agent_ids(args: TrainArgs) -> list[str]:
    return list(parallel_env(config=args.market).possible_agents)


def _train_one(args: TrainArgs, run: Path) -> None:
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.logger import configure

    TqdmCallback, BaselineEvalCallback = _callbacks()
    agent_ids = _agent_ids(args)
    if args.setting == "shared":
        venv = _shared_vec_env(args)
        slots = agent_ids
    else:
        agent = args.agent or agent_ids[0]
        venv = _single_vec_env(args, agent, args.others)
        slots = [agent]
    model = algo_class(args.algo)("MlpPolicy", venv, **model_kwargs(args, venv.action_space.shape[0]))
    model.set_logger(configure(str(run), ["csv", "tensorboard"]))
    norm = _normalizer(venv)
    evaluator = Evaluator(args, slots, run / EVAL_FILE)
    callbacks: list[Any] = [
        BaselineEvalCallback(
            evaluator, lambda: dict.fromkeys(slots, ModelPolicy(model, norm)), args.eval_freq
        )
    ]
    if args.checkpoint_freq:
        callbacks.append(
            CheckpointCallback(
                max(1, args.checkpoint_freq // venv.num_envs),
                str(run / "checkpoints"),
                name_prefix="model",
                save_vecnormalize=norm is not None,
            )
        )
    total = args.timesteps
    if args.algo in ("ppo", "a2c"):  # on-policy learning stops after a whole rollout
        rollout = int(args.resolved_hyperparams["n_steps"]) * venv.num_envs
        total = -(-args.timesteps // rollout) * rollout
    with tqdm(total=total, disable=not args.progress, desc=args.run_name, unit="step") as bar:
        callbacks.insert(0, TqdmCallback(bar))
        model.learn(
            args.timesteps, callback=CallbackList(callbacks), log_interval=log_interval(args, venv.num_envs)
        )
    model.save(run / MODEL_FILE)
    if norm is not None:
        norm.save(str(run / VECNORM_FILE))
    _print_eval(evaluator)


def _train_independent(args: TrainArgs, run: Path) -> None:
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.logger import configure

    TqdmCallback, _ = _callbacks()
    agent_ids = _agent_ids(args)
    live: dict[str, ModelPolicy] = {}  # the current policy of every agent, seen by the others' envs
    models: dict[str, Any] = {}
    norms: dict[str, Any] = {}
    for i, a in enumerate(agent_ids):
        venv = _single_vec_env(args, a, live)
        kwargs = model_kwargs(args, venv.action_space.shape[0])
        kwargs["seed"] = args.seed + 1000 * i
        models[a] = algo_class(args.algo)("MlpPolicy", venv, **kwargs)
        models[a].set_logger(configure(str(run / "agents" / a), ["csv", "tensorboard"]))
        norms[a] = _normalizer(venv)
        live[a] = ModelPolicy(models[a], norms[a])
    evaluator = Evaluator(args, agent_ids, run / EVAL_FILE)
    chunk = max(1, args.timesteps // args.rounds)
    ckpt = {
        a: CheckpointCallback(
            max(1, args.checkpoint_freq // args.n_envs),
            str(run / "agents" / a / "checkpoints"),
            name_prefix="model",
            save_vecnormalize=norms[a] is not None,
        )
        for a in agent_ids
        if args.checkpoint_freq
    }
    with tqdm(
        total=chunk * args.rounds * len(agent_ids), disable=not args.progress, desc=args.run_name
    ) as bar:
        for r in range(args.rounds):
            for a in agent_ids:
                cbs = [TqdmCallback(bar), *([ckpt[a]] if a in ckpt else [])]
                models[a].learn(
                    chunk,
                    callback=CallbackList(cbs),
                    reset_num_timesteps=r == 0,
                    log_interval=log_interval(args, args.n_envs),
                )
            if args.eval_freq or r == args.rounds - 1:
                row = evaluator.evaluate(live, (r + 1) * chunk)
                bar.set_postfix(learner=f"{row['learner']:.3f}")
                assert evaluator.last is not None
                for a in agent_ids:  # each learner's own slot, next to the population means
                    models[a].logger.record("eval/own_slot", evaluator.last.episode_reward[a])
                    for key, value in row.items():
                        if key != "timesteps":
                            models[a].logger.record(f"eval/{key}", value)
                    models[a].logger.dump(models[a].num_timesteps)
    for a in agent_ids:
        models[a].save(run / "agents" / a / MODEL_FILE)
        if norms[a] is not None:
            norms[a].save(str(run / "agents" / a / VECNORM_FILE))
    _print_eval(evaluator)


def _print_eval(evaluator: Evaluator) -> None:
    if evaluator.rows:
        last = evaluator.rows[-1]
        shown = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "timesteps")
        print(f"evaluation (mean episode reward per learned slot): {shown}")


# ----------------------------------------------------------------------------------------------- load
def load_normalizer(path: Path) -> Any:
    """VecNormalize statistics saved by :meth:`VecNormalize.save` (without an attached env), or ``None``."""
    if not path.exists():
        return None
    with path.open("rb") as f:
        norm = pickle.load(f)  # written by this package's own training run
    norm.training = False
    return norm


def load_policies(run: Path, args: TrainArgs) -> dict[str, ModelPolicy]:
    """The trained policy of every learned slot of an SB3 run (agent id -> policy)."""
    cls = algo_class(args.algo)
    agent_ids = _agent_ids(args)
    if args.setting == "independent":
        return {
            a: ModelPolicy(
                cls.load(run / "agents" / a / MODEL_FILE, device=args.device),
                load_normalizer(run / "agents" / a / VECNORM_FILE),
            )
            for a in agent_ids
        }
    policy = ModelPolicy(cls.load(run / MODEL_FILE, device=args.device), load_normalizer(run / VECNORM_FILE))
    slots = agent_ids if args.setting == "shared" else [args.agent or agent_ids[0]]
    return dict.fromkeys(slots, policy)

"""Arguments of ``p2p-gym train``: a dataclass with one docstring per field, loadable from YAML.

The environment options are one nested :class:`~p2p_gym.sim.MarketConfig` (``market: {...}`` in YAML); run
configs of earlier versions, with flat ``scenario``, ``mechanism``, ``grid``, ``peer_selection``, ``peer_k``,
``episode_steps`` and ``env_kwargs`` keys, still load (:meth:`TrainArgs.from_dict` folds them into ``market``).

Precedence: dataclass defaults < YAML file (``--config``) < command-line flags. The resolved arguments
(with the default hyperparameters of the algorithm merged in) are written to ``<run>/config.yaml``, so
``p2p-gym train --config runs/NAME/config.yaml`` repeats the run exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from p2p_gym.errors import P2PGymError
from p2p_gym.sim import MarketConfig

#: Algorithms per library: stable-baselines3 (single-agent algorithms, shared or per-agent), Ray RLlib (PPO, and
#: MAPPO: PPO with a centralised critic over the global state) and BenchMARL/TorchRL (the CTDE algorithms).
LIB_ALGOS: dict[str, tuple[str, ...]] = {
    "sb3": ("ppo", "a2c", "sac", "td3"),
    "rllib": ("ppo", "mappo"),
    "benchmarl": ("mappo", "ippo", "maddpg", "masac"),
}
ALGOS = tuple(dict.fromkeys(a for algos in LIB_ALGOS.values() for a in algos))
SETTINGS = ("shared", "independent", "single")
LIBS = tuple(LIB_ALGOS)

#: Default hyperparameters per algorithm (stable-baselines3 keyword arguments; ``net_arch`` goes to
#: ``policy_kwargs``). Rewards are small money amounts per step (≈ 0.01–1 EUR), so learning rates are the
#: usual ones and ``--normalize-reward`` is optional. Overridden by ``hyperparams`` in the config / ``--hp``.
DEFAULT_HYPERPARAMS: dict[str, dict[str, Any]] = {
    "ppo": {
        "learning_rate": 3e-4,
        "n_steps": 512,
        "batch_size": 128,
        "n_epochs": 10,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.0,
        "net_arch": [64, 64],
    },
    "a2c": {
        "learning_rate": 7e-4,
        "n_steps": 16,
        "gamma": 0.99,
        "gae_lambda": 1.0,
        "ent_coef": 0.0,
        "net_arch": [64, 64],
    },
    "sac": {
        "learning_rate": 3e-4,
        "buffer_size": 100_000,
        "learning_starts": 100,
        "batch_size": 256,
        "tau": 0.005,
        "gamma": 0.99,
        "train_freq": 1,
        "gradient_steps": 1,
        "net_arch": [64, 64],
    },
    "td3": {
        "learning_rate": 1e-3,
        "buffer_size": 100_000,
        "learning_starts": 100,
        "batch_size": 256,
        "tau": 0.005,
        "gamma": 0.99,
        "train_freq": 1,
        "gradient_steps": 1,
        "action_noise_std": 0.1,
        "net_arch": [64, 64],
    },
}

#: RLlib PPO defaults (``PPOConfig().training(...)`` keyword arguments, plus ``net_arch``).
RLLIB_PPO_DEFAULTS: dict[str, Any] = {
    "lr": 3e-4,
    "gamma": 0.99,
    "lambda_": 0.95,
    "clip_param": 0.2,
    "train_batch_size_per_learner": 1024,
    "minibatch_size": 128,
    "num_epochs": 10,
    "net_arch": [64, 64],
}


#: BenchMARL defaults per algorithm: learning rate, discount, MLP sizes and the collection/optimisation schedule of
#: BenchMARL's ``ExperimentConfig`` (on-policy: frames per batch, minibatch size and passes; off-policy: frames per
#: batch, replay size, batch size and optimizer steps per batch). Overridden by ``hyperparams`` / ``--hp``.
_BENCHMARL_ON_POLICY: dict[str, Any] = {
    "lr": 3e-4,
    "gamma": 0.99,
    "lmbda": 0.95,
    "clip_epsilon": 0.2,
    "entropy_coef": 0.0,
    "frames_per_batch": 1920,
    "minibatch_size": 384,
    "n_minibatch_iters": 10,
    "net_arch": [64, 64],
}
_BENCHMARL_OFF_POLICY: dict[str, Any] = {
    "lr": 3e-4,
    "gamma": 0.99,
    "frames_per_batch": 480,
    "memory_size": 100_000,
    "train_batch_size": 256,
    "n_optimizer_steps": 50,
    "polyak_tau": 0.005,
    "net_arch": [64, 64],
}
BENCHMARL_DEFAULTS: dict[str, dict[str, Any]] = {
    "mappo": dict(_BENCHMARL_ON_POLICY),
    "ippo": dict(_BENCHMARL_ON_POLICY),
    "maddpg": dict(_BENCHMARL_OFF_POLICY),
    "masac": dict(_BENCHMARL_OFF_POLICY),
}


def default_hyperparams(lib: str, algo: str) -> dict[str, Any]:
    """The default hyperparameters of ``algo`` in ``lib``."""
    if lib == "rllib":
        return dict(RLLIB_PPO_DEFAULTS)
    if lib == "benchmarl":
        return dict(BENCHMARL_DEFAULTS[algo])
    return dict(DEFAULT_HYPERPARAMS[algo])


class TrainConfigError(P2PGymError, ValueError):
    """Invalid training arguments (names the field, the value and what is allowed)."""


@dataclass
class TrainArgs:
    """Arguments of ``p2p-gym train`` (every field is also a key of the YAML config).

    The environment options are one field, ``market``; ``scenario``, ``mechanism`` and ``peer_selection`` read
    it. For callers of earlier versions the constructor (and :meth:`from_dict`) still takes ``scenario``,
    ``mechanism``, ``grid``, ``peer_selection``, ``peer_k``, ``episode_steps`` and ``env_kwargs`` and folds them
    into ``market``.
    """

    algo: str = "ppo"
    """Algorithm: ppo, a2c, sac or td3 (``lib: sb3``); ppo or mappo (``lib: rllib``); mappo, ippo, maddpg or
    masac (``lib: benchmarl``)."""
    lib: str = "sb3"
    """Library: ``sb3`` (stable-baselines3), ``rllib`` (Ray RLlib, extra ``ray``) or ``benchmarl`` (BenchMARL on
    TorchRL, extra ``marl``)."""
    setting: str = "shared"
    """shared (one policy, parameter sharing over all agents), independent (one policy per agent, trained
    together) or single (one learner among fixed rule-based agents)."""
    market: MarketConfig = field(default_factory=MarketConfig)
    """Options of the market environment (:class:`p2p_gym.sim.MarketConfig`: scenario, mechanism, grid,
    peer_selection, episode_steps, peer_k, grid_policy, ...); in YAML a nested mapping ``market: {...}``."""
    timesteps: int = 100_000
    """Training budget in environment steps of the learner's own experience (``shared``: summed over all
    agents, as each agent is one sub-env; ``independent``: per agent)."""
    seed: int = 0
    """Seed of the model, the environment days and the rule-based agents; part of the run name."""
    out: str | None = None
    """Run directory (default ``runs/<algo>-<setting>-<scenario>-<mechanism>[-peers]-s<seed>``)."""
    agent: str | None = None
    """``single``: the learner's agent id (default: the first agent)."""
    others: str = "zi-c"
    """``single``: the rule-based policy of the other agents (any name of :func:`agents.policy_from_name`,
    e.g. ``zi-c``, ``truthful``, ``zi-c+random-k``)."""
    n_envs: int = 1
    """Copies of the environment stepped together (``shared``: each copy contributes all its agents)."""
    rounds: int = 4
    """``independent``: round-robin rounds; in each round every agent trains ``timesteps / rounds`` steps
    against the others frozen at their current policy."""
    normalize_obs: bool = False
    """Normalise observations with running statistics (SB3 ``VecNormalize``; saved with the model)."""
    normalize_reward: bool = False
    """Scale rewards by a running estimate of the return's standard deviation (SB3 ``VecNormalize``)."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """Hyperparameter overrides (merged over :data:`DEFAULT_HYPERPARAMS`; RLlib: :data:`RLLIB_PPO_DEFAULTS`)."""
    eval_freq: int = 10_000
    """Evaluate against the rule-based baselines every this many training steps (0: only at the end)."""
    eval_episodes: int = 3
    """Episodes per evaluation."""
    eval_baselines: list[str] = field(default_factory=lambda: ["zi-c", "truthful"])
    """Rule-based policies played in the learner's slots for comparison."""
    eval_seed: int | None = None
    """Seed of the evaluation episodes (episode ``e`` plays seed ``eval_seed + e``; default ``seed + 1_000_000``).
    Runs of different seeds with the same ``eval_seed`` are evaluated on the same days."""
    eval_market: dict[str, Any] = field(default_factory=dict)
    """Market options changed for the evaluation only, e.g. ``{day_split: test, compute_optimum: episode}``
    (held-out days, and the community's gains measured against the episode's no-trade reference)."""
    checkpoint_freq: int = 50_000
    """Save a checkpoint every this many training steps (0: none)."""
    progress: bool = True
    """Show a progress bar."""
    device: str = "cpu"
    """Torch device."""
    torch_threads: int = 1
    """``torch.set_num_threads``; 1 keeps small MLPs fast and runs reproducible."""
    ray_address: str | None = None
    """``lib: rllib``: address of an existing Ray cluster (default: start a local one)."""
    ray_num_cpus: int = 2
    """``lib: rllib``: CPUs of the local Ray cluster."""

    def __post_init__(self) -> None:
        if isinstance(self.market, Mapping):
            self.market = MarketConfig.from_dict(self.market)  # EnvConfigError names the option
        if not isinstance(self.market, MarketConfig):
            raise TrainConfigError(
                f"market: expected a MarketConfig or a mapping of its options, got {type(self.market).__name__}"
            )
        _choice("algo", self.algo, ALGOS)
        _choice("lib", self.lib, LIBS)
        _choice("setting", self.setting, SETTINGS)
        if self.algo not in LIB_ALGOS[self.lib]:
            raise TrainConfigError(
                f"algo: lib {self.lib!r} supports {list(LIB_ALGOS[self.lib])}, got {self.algo!r}"
            )
        if self.lib != "sb3" and self.setting == "single":
            raise TrainConfigError(
                f"setting: lib {self.lib!r} supports 'shared' and 'independent', got 'single'"
            )
        if self.lib != "sb3" and (self.normalize_obs or self.normalize_reward):
            raise TrainConfigError(
                f"normalize_obs, normalize_reward: stable-baselines3 (VecNormalize) only; with lib {self.lib!r} both "
                "must be false"
            )
        for name in ("timesteps", "n_envs", "rounds", "eval_episodes", "torch_threads"):
            if int(getattr(self, name)) < 1:
                raise TrainConfigError(f"{name}: must be ≥ 1, got {getattr(self, name)!r}")
        for name in ("eval_freq", "checkpoint_freq"):
            if int(getattr(self, name)) < 0:
                raise TrainConfigError(f"{name}: must be ≥ 0, got {getattr(self, name)!r}")
        if self.eval_seed is not None and (
            isinstance(self.eval_seed, bool) or not isinstance(self.eval_seed, int) or self.eval_seed < 0
        ):
            raise TrainConfigError(f"eval_seed: must be an integer ≥ 0 or null, got {self.eval_seed!r}")
        if not isinstance(self.eval_market, Mapping):
            raise TrainConfigError(
                f"eval_market: expected a mapping of market options, got {self.eval_market!r}"
            )
        self.eval_market = dict(self.eval_market)
        self.market.replace(**self.eval_market)  # EnvConfigError names a bad option
        defaults = default_hyperparams(self.lib, self.algo)
        unknown = set(self.hyperparams) - set(defaults) - _EXTRA_HP.get(self.lib, set())
        if unknown:
            raise TrainConfigError(
                f"hyperparams: unknown keys {sorted(unknown)} for {self.lib}/{self.algo}; known: {sorted(defaults)}"
            )

    @property
    def run_name(self) -> str:
        """``<algo>-<setting>-<scenario>-<mechanism>[-peers][-<lib>]-s<seed>`` (no lib part for sb3)."""
        parts = [self.algo, self.setting, self.scenario, self.mechanism]
        if self.peer_selection:
            parts.append("peers")
        if self.lib != "sb3":
            parts.append(self.lib)
        return "-".join([*parts, f"s{self.seed}"])

    @property
    def run_dir(self) -> Path:
        """The run directory (``out`` or ``runs/<run_name>``)."""
        return Path(self.out) if self.out else Path("runs") / self.run_name

    @property
    def resolved_hyperparams(self) -> dict[str, Any]:
        """The algorithm's defaults with ``hyperparams`` merged over them."""
        defaults = default_hyperparams(self.lib, self.algo)
        return {**defaults, **self.hyperparams}

    @property
    def scenario(self) -> str:
        """The scenario name (``market.scenario``)."""
        return self.market.scenario

    @property
    def mechanism(self) -> str:
        """The market mechanism (``market.mechanism``)."""
        return self.market.mechanism

    @property
    def peer_selection(self) -> bool:
        """Whether the action holds per-peer scores (``market.peer_selection``)."""
        return self.market.peer_selection

    @property
    def env_config(self) -> dict[str, Any]:
        """Keyword arguments of :func:`p2p_gym.parallel_env`: ``market.to_dict()`` (a plain dict, as RLlib's
        ``env_config`` must be)."""
        return self.market.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (``market`` nested), with the resolved hyperparameters and run directory (for
        config.yaml)."""
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}
        d["market"] = self.market.to_dict()
        d["hyperparams"] = self.resolved_hyperparams
        d["out"] = str(self.run_dir)
        return d

    def save(self, path: str | Path) -> None:
        """Write the resolved arguments as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainArgs:
        """Build from a dict, rejecting unknown keys.

        ``market`` is a mapping of :class:`~p2p_gym.sim.MarketConfig` options (or a config). Run configs of earlier
        versions load too: their flat keys ``scenario``, ``mechanism``, ``grid``, ``peer_selection``, ``peer_k``,
        ``episode_steps`` and the entries of ``env_kwargs`` are folded into ``market``; ``batched`` is dropped
        (always batched now).
        """
        if not isinstance(data, Mapping):
            raise TrainConfigError(
                f"config: expected a mapping of TrainArgs fields, got {type(data).__name__}"
            )
        data = {k: v for k, v in data.items() if k != "batched"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - set(LEGACY_MARKET_KEYS)
        if unknown:
            raise TrainConfigError(f"config: unknown keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)  # the constructor folds the old keys into market

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainArgs:
        """Load from a YAML file (as written by :meth:`save`)."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise TrainConfigError(f"config: {path} must hold a mapping, got {type(data).__name__}")
        return cls.from_dict(data)


_dataclass_init = TrainArgs.__init__


@functools.wraps(_dataclass_init)
def _init_folding_old_keys(self: TrainArgs, *args: Any, **kwargs: Any) -> None:
    """The dataclass constructor, also taking the keyword arguments of earlier versions (``scenario=...``,
    ``grid=...``, ``env_kwargs={...}``, see :data:`LEGACY_MARKET_KEYS`), which are folded into ``market``."""
    legacy = {k: kwargs.pop(k) for k in LEGACY_MARKET_KEYS if k in kwargs}
    if legacy:
        kwargs["market"] = _fold_legacy(legacy, kwargs.get("market"))
    _dataclass_init(self, *args, **kwargs)


TrainArgs.__init__ = _init_folding_old_keys  # type: ignore[method-assign]


#: Keys accepted in ``hyperparams`` besides the defaults (other constructor arguments of the models).
_EXTRA_HP: dict[str, set[str]] = {
    "sb3": {
        "max_grad_norm",
        "vf_coef",
        "target_kl",
        "use_sde",
        "sde_sample_freq",
        "policy_delay",
        "target_policy_noise",
        "target_noise_clip",
        "ent_coef",
        "normalize_advantage",
        "clip_range_vf",
        "rms_prop_eps",
        "use_rms_prop",
        "activation",
        "log_std_init",
    },
    "rllib": {"entropy_coeff", "vf_loss_coeff", "kl_coeff", "grad_clip", "vf_clip_param", "use_kl_loss"},
    "benchmarl": {"critic_coef", "max_grad_norm", "share_param_critic", "activation", "exploration_eps"},
}


#: Keys of run configs of earlier versions that are :class:`~p2p_gym.sim.MarketConfig` options now.
LEGACY_MARKET_KEYS: tuple[str, ...] = (
    "scenario",
    "mechanism",
    "grid",
    "peer_selection",
    "peer_k",
    "episode_steps",
    "env_kwargs",
)


def _fold_legacy(legacy: dict[str, Any], market: Any) -> dict[str, Any]:
    """The ``market`` mapping of an old-style config: its flat keys and ``env_kwargs`` entries, under ``market``
    (a key given both ways must agree)."""
    env_kwargs = legacy.pop("env_kwargs", None) or {}
    if not isinstance(env_kwargs, Mapping):
        raise TrainConfigError(f"env_kwargs: expected a mapping of market options, got {env_kwargs!r}")
    flat = {**legacy, **env_kwargs}
    if "max_cycles" in flat:  # parallel_env's alias of episode_steps (it won over episode_steps there)
        flat["episode_steps"] = flat.pop("max_cycles")
    if market is None:
        return flat
    nested = market.to_dict() if isinstance(market, MarketConfig) else market
    if not isinstance(nested, Mapping):
        raise TrainConfigError(f"market: expected a mapping of options, got {type(nested).__name__}")
    for key, value in flat.items():
        if key in nested and nested[key] != value:
            raise TrainConfigError(
                f"{key}: given as {value!r} (old flat key) and as market.{key}={nested[key]!r}; keep one"
            )
    return {**flat, **nested}


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TrainConfigError(f"{name}: expected one of {list(allowed)}, got {value!r}")

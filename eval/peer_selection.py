"""Peer selection: a learned partner choice beats random-k at the same k where partners matter.

Task: ``tiny``, bilateral matching with peer selection (mutual acceptance: a pair trades only if both accept each
other), each agent accepts its ``k`` highest-scored peers, and a distance-based network fee
(``grid_policy="fee"``, ``fee_per_kwh_km``) so that who one trades with changes the profit. The other agents bid
ZI-C and pick ``k`` random peers (``zi-c+random-k:k``). The learner's *bids* are ZI-C too; only its peer scores
are learned (PPO, :class:`PeerOnlyEnv`), so the comparison isolates partner choice: the learner's slot with the
learned scores vs the same slot with ``zi-c+random-k:k``, on the same held-out days.

Usage::

    python -m eval.peer_selection                     # 3 seeds x 20000 steps, learner prosumer_0, k = 2
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import gymnasium
import numpy as np

from p2p_gym.envs import parallel_env
from p2p_gym.wrappers import SingleAgentEnv
from training.policies import play, rule_policy


class PeerOnlyEnv(gymnasium.Env):
    """The learner's peer scores float[N-1] are the action; its price/quantity/battery come from a rule.

    Args:
        env_config: keyword arguments of :func:`p2p_gym.parallel_env` (with ``peer_selection=True``).
        agent: the learner's agent id.
        bidder: rule name of the learner's bidding (``zi-c``).
        others: rule name of the other agents (``zi-c+random-k:2``).
    """

    def __init__(self, env_config: dict[str, Any], agent: str, bidder: str, others: str) -> None:
        env = parallel_env(**env_config)
        pol = {a: rule_policy(others, env, a) for a in env.possible_agents if a != agent}
        self.inner = SingleAgentEnv(env, agent, pol)
        self.bidder = rule_policy(bidder, env, agent)
        self.observation_space = self.inner.observation_space
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (env.n - 1,), np.float32)
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if hasattr(self.bidder, "reset"):
            self.bidder.reset()
        self._obs, info = self.inner.reset(seed=seed, options=options)
        return self._obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self._obs is not None
        full = np.asarray(self.bidder.act(self._obs, self.inner.env.rng), dtype=np.float32).copy()
        full[3:] = action
        self._obs, reward, term, trunc, info = self.inner.step(full)
        if hasattr(self.bidder, "observe_result"):
            self.bidder.observe_result(info)
        return self._obs, reward, term, trunc, info


class LearnedPeers:
    """ZI-C bids with the trained model's peer scores (the :mod:`agents` protocol, for :func:`play`)."""

    def __init__(self, model: Any, env: Any, agent: str, bidder: str) -> None:
        self.model = model
        self.bidder = rule_policy(bidder, env, agent)

    def reset(self) -> None:
        if hasattr(self.bidder, "reset"):
            self.bidder.reset()

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        full = np.asarray(self.bidder.act(obs, rng), dtype=np.float32).copy()
        full[3:] = self.model.predict(obs, deterministic=True)[0]
        return full

    def observe_result(self, info: dict) -> None:
        if hasattr(self.bidder, "observe_result"):
            self.bidder.observe_result(info)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=20_000, help="PPO budget per seed (env steps)")
    parser.add_argument("--agent", default="prosumer_0")
    parser.add_argument("--k", type=int, default=2, help="peers accepted per agent")
    parser.add_argument("--fee", type=float, default=0.1, help="network fee per kWh and km (grid_policy=fee)")
    parser.add_argument("--eval-episodes", type=int, default=5)
    a = parser.parse_args(argv)

    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    cfg = {
        "scenario": "tiny",
        "mechanism": "bilateral",
        "grid": "linear",
        "peer_selection": True,
        "peer_k": a.k,
        "episode_steps": 96,
        "grid_policy": "fee",
        "fee_per_kwh_km": a.fee,
    }
    others = f"zi-c+random-k:{a.k}"
    t0 = time.perf_counter()
    rows = []
    for seed in a.seeds:
        env = PeerOnlyEnv(cfg, a.agent, "zi-c", others)
        model = PPO(
            "MlpPolicy", env, n_steps=512, batch_size=128, policy_kwargs={"net_arch": [64, 64]}, seed=seed
        )
        model.learn(a.timesteps)
        eval_seed = seed + 1_000_000
        learned = play(
            cfg,
            lambda e, ag, m=model: (
                LearnedPeers(m, e, ag, "zi-c") if ag == a.agent else rule_policy(others, e, ag)
            ),
            a.eval_episodes,
            eval_seed,
        )
        random_k = play(cfg, lambda e, ag: rule_policy(others, e, ag), a.eval_episodes, eval_seed)
        rows.append((seed, learned.episode_reward[a.agent], random_k.episode_reward[a.agent]))
        print(f"seed {seed}: learned {rows[-1][1]:.4f}  random-k {rows[-1][2]:.4f}", flush=True)
    wall = time.perf_counter() - t0
    print(f"\npeer selection on tiny/bilateral, k = {a.k}, fee {a.fee}/kWh/km, learner {a.agent} (ZI-C bids)")
    print(
        f"budget: {a.timesteps} env steps per seed x {len(a.seeds)} seeds; wall time {wall:.0f} s (1 thread)"
    )
    print(
        f"{'seed':>4} {'learned':>9} {'random-k':>9}  (profit per day, mean of {a.eval_episodes} held-out days)"
    )
    for seed, lp, rp in rows:
        print(f"{seed:>4} {lp:>9.4f} {rp:>9.4f}")
    lm, rm = np.mean([r[1] for r in rows]), np.mean([r[2] for r in rows])
    print(f"mean {lm:>9.4f} {rm:>9.4f}")
    wins = sum(lp > rp for _, lp, rp in rows)
    ok = wins == len(rows)
    print(f"{'PASS' if ok else 'FAIL'}: learned peers beat random-k in {wins}/{len(rows)} seeds")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

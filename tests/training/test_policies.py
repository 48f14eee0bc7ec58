"""Roll-outs used by the evaluation: determinism, slot replacement, model adapter, equality with a plain loop."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.sim import MarketConfig
from training.policies import ModelPolicy, mixed_factory, play

CFG = {"scenario": "tiny", "mechanism": "uniform", "grid": "linear", "episode_steps": 12}


def test_play_is_deterministic_and_baseline_slot_matches_rule() -> None:
    a = play(CFG, mixed_factory({"prosumer_0": None}, "zi-c", fill_learned_slots="zi-c"), 2, seed=5)
    b = play(CFG, mixed_factory({}, "zi-c"), 2, seed=5)
    assert a.episode_reward == b.episode_reward  # the baseline slot is exactly a ZI-C agent
    assert set(a.episode_reward) == {f"prosumer_{i}" for i in range(4)}
    assert "p2p_volume_kwh" in a.market


def test_model_policy_in_learned_slot() -> None:
    calls: list[np.ndarray] = []

    def model(obs: np.ndarray) -> np.ndarray:
        calls.append(obs)
        return np.array([-1.0, 1.0, 0.0], dtype=np.float32)  # ask the feed-in price for everything

    policy = ModelPolicy(model)
    res = play(CFG, mixed_factory({"prosumer_0": policy}, "zi-c"), 1, seed=1)
    assert len(calls) == 12 and calls[0].shape == (11,)
    truthful = play(
        CFG, mixed_factory({"prosumer_0": policy}, "zi-c", fill_learned_slots="truthful"), 1, seed=1
    )
    assert set(res.episode_reward) == set(truthful.episode_reward)


def reference_play(cfg: dict, rule: str, episodes: int, seed: int) -> tuple[dict, dict]:
    """A hand-written roll-out over ``parallel_env``: the rule in every slot drawing from ``env.rng``, episode ``e``
    reset with ``seed + e``; mean summed reward per agent and mean of the finite numeric market KPIs."""
    from agents import policy_from_name
    from p2p_gym import parallel_env

    env = parallel_env(**cfg)
    agents = list(env.possible_agents)
    pols = {a: policy_from_name(rule, env, a) for a in agents}
    totals = np.zeros((episodes, len(agents)))
    kpis: dict[str, list[float]] = {}
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        for p in pols.values():
            if hasattr(p, "reset"):
                p.reset()
        done = False
        while not done:
            actions = {a: np.asarray(pols[a].act(obs[a], env.rng), dtype=np.float32) for a in agents}
            obs, rew, term, trunc, infos = env.step(actions)
            totals[e] += [rew[a] for a in agents]
            for a in agents:
                if hasattr(pols[a], "observe_result"):
                    pols[a].observe_result(infos[a])
            for key, value in infos[agents[0]]["market"].items():
                if isinstance(value, (int, float, np.number)) and np.isfinite(value):
                    kpis.setdefault(key, []).append(float(value))
            done = any(term.values()) or any(trunc.values())
    return {a: float(totals[:, i].mean()) for i, a in enumerate(agents)}, {
        k: float(np.mean(v)) for k, v in kpis.items()
    }


@pytest.mark.parametrize(
    ("cfg", "rule"),
    [
        ({**CFG, "episode_steps": 96}, "zi-c"),  # a whole day: PV at noon, so trades and random prices
        (
            {
                **CFG,
                "episode_steps": 96,
                "mechanism": "bilateral",
                "peer_selection": True,
                "grid_policy": "fee",
            },
            "zi-c+random-k",
        ),
    ],
)
def test_play_equals_a_hand_written_loop(cfg: dict, rule: str) -> None:
    res = play(cfg, mixed_factory({}, rule), episodes=2, seed=4)
    rewards, kpis = reference_play(cfg, rule, episodes=2, seed=4)
    assert res.episode_reward == rewards  # exactly: same days, same random draws
    assert set(res.market) == set(kpis)
    for key, value in kpis.items():
        assert res.market[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    # a MarketConfig plays the same as the keyword arguments
    assert play(MarketConfig.from_dict(cfg), mixed_factory({}, rule), 2, seed=4).episode_reward == rewards
    # another seed plays other days / draws
    assert play(cfg, mixed_factory({}, rule), 2, seed=5).episode_reward != rewards


def test_play_gains_against_the_episode_reference_match_the_step_accounting() -> None:
    """With fixed positions (tiny, batteries removed) the episode's no-trade reference is the sum of the steps'
    no-trade welfare and the episode optimum is the sum of the step optima (no store couples the steps): the
    gains ``play`` reports with ``compute_optimum="episode"`` must equal the step-wise sums of a second run with
    ``compute_optimum="step"``, and truthful bids in the uniform auction realise the optimum."""
    fixed = {**CFG, "scenario_overrides": {"battery_kwh": [0.0] * 4, "battery_kw": [0.0] * 4}}
    episode = play({**fixed, "compute_optimum": "episode"}, mixed_factory({}, "zi-c"), 2, seed=3)
    step = play({**fixed, "compute_optimum": "step"}, mixed_factory({}, "zi-c"), 2, seed=3)
    steps = CFG["episode_steps"]
    # play() averages KPIs over steps and episodes: × steps = mean episode sum
    step_gains = (step.market["welfare"] - step.market["welfare_no_trade"]) * steps
    step_best = (step.market["welfare_optimum"] - step.market["welfare_no_trade"]) * steps
    assert np.mean(episode.gains) == pytest.approx(step_gains, rel=1e-9, abs=1e-9)
    assert np.mean(episode.optimum_gains) == pytest.approx(step_best, rel=1e-6, abs=1e-6)
    assert np.isnan(step.optimum_gains).all()  # no episode reference without compute_optimum="episode"
    truthful = play({**fixed, "compute_optimum": "episode"}, mixed_factory({}, "truthful"), 2, seed=3)
    assert truthful.gains == pytest.approx(truthful.optimum_gains, abs=1e-6)
    assert all(g <= b + 1e-6 for g, b in zip(episode.gains, episode.optimum_gains, strict=True))


def test_play_welfare_minus_the_reference_is_the_gains() -> None:
    """``welfare`` (policy-dependent) minus ``reference_welfare`` (the day's, measured once) is ``gains``, and the
    reference of a day does not depend on the policy played: the benchmark scores runs evaluated without the
    episode optimum against a reference measured once."""
    cfg = {**CFG, "episode_steps": 96, "dispatch": "committed", "compute_optimum": "episode"}
    zi = play(cfg, mixed_factory({}, "zi-c"), 2, seed=4)
    truthful = play(cfg, mixed_factory({}, "truthful"), 2, seed=4)
    assert np.subtract(zi.welfare, zi.reference_welfare) == pytest.approx(zi.gains)
    assert zi.reference_welfare == pytest.approx(truthful.reference_welfare)
    assert zi.welfare != pytest.approx(truthful.welfare)


def test_a_shared_model_acts_for_all_agents_in_one_batch_with_the_same_actions() -> None:
    """One ModelPolicy object in every slot is asked once per step for all agents (``act_batch``); the episode
    must equal the one played with a per-agent callable around the same model, next to ZI-C agents whose draws
    from the generator must not shift."""
    from stable_baselines3 import PPO

    from p2p_gym.wrappers import batched_vec_env

    model = PPO("MlpPolicy", batched_vec_env(1, 0, scenario="tiny"), seed=3, policy_kwargs={"net_arch": [8]})
    calls: list[int] = []

    class Counting(ModelPolicy):
        def act_batch(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            calls.append(len(obs))
            return super().act_batch(obs, rng)

    shared = Counting(model)
    learned = {"prosumer_0": shared, "prosumer_1": shared, "prosumer_3": shared}
    one_by_one = {a: (lambda o: model.predict(o, deterministic=True)[0]) for a in learned}
    a = play(CFG, mixed_factory(learned, "zi-c"), 2, seed=8)
    b = play(CFG, mixed_factory(one_by_one, "zi-c"), 2, seed=8)
    assert calls and set(calls) == {3}  # one call per step for the three slots
    # a batched matrix product may differ from the row-by-row one in the last bits of float32
    assert a.episode_reward == pytest.approx(b.episode_reward, abs=1e-6)
    assert a.welfare == pytest.approx(b.welfare, abs=1e-6)

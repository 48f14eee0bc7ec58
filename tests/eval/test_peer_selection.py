"""The peer-selection study: fixed sets accept exactly their peers, the exhaustive search finds the brute-force
best, nearest picks the shortest line paths, and the CLI runs end to end and refuses bad options in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import p2p_gym
from eval import peer_selection as ps
from p2p_gym.sim import stages
from training.policies import play, rule_policy

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "scenario": "tiny", "mechanism": "bilateral", "grid": "linear", "peer_selection": True, "peer_k": 1,
    "episode_steps": 96, "grid_policy": "fee", "fee_per_kwh_km": 0.1, "day_split": "test",
}  # fmt: skip


def _small_env(k: int = 3) -> p2p_gym.envs.P2PMarketEnv:
    return p2p_gym.parallel_env(**ps.market_config(ps.CASES["small"], k, 0.1))


def test_fixed_set_accepts_exactly_its_set_and_trades_only_with_it() -> None:
    env = _small_env()
    agent, peers = "prosumer_0", (1, 2, 5)  # the three households without PV
    n, i = len(env.possible_agents), env.possible_agents.index("prosumer_0")
    learner = ps.AcceptanceLog(ps.fixed_set_policy(env, agent, peers), env, agent, 3)
    pol = {a: learner if a == agent else rule_policy("zi-c+random-k:3", env, a) for a in env.possible_agents}
    obs, _ = env.reset(seed=ps.eval_seed(0) + 2)
    for p in pol.values():
        p.reset()
    partners, traded = set(), 0.0
    while env.agents:
        actions = {a: np.asarray(pol[a].act(obs[a], env.rng), dtype=np.float32) for a in env.agents}
        others = [m for m in range(n) if m != i]
        np.testing.assert_array_equal(actions[agent][3:], np.where(np.isin(others, peers), 1.0, -1.0))
        # the env's rule (peer_k highest scores) turns the scores into exactly the set
        scores = np.stack([actions[a][3:] for a in env.possible_agents])[None]
        accept = stages.partners(scores, env.static.others, env.config.peer_k)[0]
        assert set(np.flatnonzero(accept[i])) == set(peers)
        obs, _, _, _, infos = env.step(actions)
        for a, p in pol.items():
            p.observe_result(infos[a])
        tr = env.last_outcome.result.trades
        mine = (tr.buyer == i) | (tr.seller == i)
        partners |= set(np.where(tr.buyer == i, tr.seller, tr.buyer)[mine].tolist())
        traded += float(tr.quantity[mine].sum())
    assert traded > 0 and partners <= set(peers)  # it trades, and never with a peer outside its set
    summary = learner.summary()
    assert summary["accept_share"] == {m: float(m in peers) for m in (1, 2, 3, 4, 5, 6, 7)}
    assert sum(summary["p2p_kwh_per_day"].values()) == pytest.approx(traded)


def test_fixed_peers_rejects_self_and_unknown_agents() -> None:
    with pytest.raises(ValueError, match="peers"):
        ps.FixedPeers(4, 0, [0, 1])
    with pytest.raises(ValueError, match="peers"):
        ps.FixedPeers(4, 0, [4])


class _ScoreOne:
    """ZI-C bids and score +1 for one peer only (written here, independently of the study's FixedPeers)."""

    def __init__(self, env, agent: str, peer: int) -> None:
        self.bid = rule_policy("zi-c", env, agent)
        i = env.possible_agents.index(agent)
        self.scores = np.array(
            [1.0 if m == peer else -1.0 for m in range(len(env.possible_agents)) if m != i]
        )

    def act(self, obs, rng):
        a = np.array(self.bid.act(obs, rng), dtype=np.float32)
        a[3:] = self.scores
        return a


def test_exhaustive_search_best_is_the_brute_force_max() -> None:
    episodes, seed = 2, ps.eval_seed(0)
    found = ps.exhaustive_search(TINY, "prosumer_0", 1, "zi-c+random-k:1", episodes, seed)
    brute = {}
    for peer in (1, 2, 3):

        def factory(env, a, peer=peer):
            return _ScoreOne(env, a, peer) if a == "prosumer_0" else rule_policy("zi-c+random-k:1", env, a)

        brute[(peer,)] = play(TINY, factory, episodes, seed).episode_reward["prosumer_0"]
    assert found.keys() == brute.keys()
    for s in brute:
        assert found[s] == pytest.approx(brute[s], abs=1e-9)
    summary = ps.set_summary(found)
    best = max(brute, key=brute.get)
    assert summary["best_set"] == list(best) and summary["best"] == pytest.approx(max(brute.values()))
    assert summary["worst"] == pytest.approx(min(brute.values()))
    assert summary["median"] == pytest.approx(float(np.median(list(brute.values()))))
    assert len({round(v, 9) for v in brute.values()}) > 1  # the choice matters on this instance
    assert ps.rank_of(found, best) == 1


def test_nearest_picks_the_shortest_line_paths() -> None:
    import pandapower.topology as top

    env = _small_env()
    sc = env.scenario
    graph = top.create_nxgraph(sc.net, calc_branch_impedances=False)  # edge weight: line length in km
    for agent, k in (("prosumer_0", 3), ("prosumer_5", 2)):
        i = env.possible_agents.index(agent)
        km = nx.single_source_dijkstra_path_length(graph, int(sc.bus[i]), weight="weight")
        dist = {m: km[int(sc.bus[m])] for m in range(len(sc.bus)) if m != i}
        expected = sorted(dist, key=dist.get)[:k]
        assert dist[expected[-1]] < min(d for m, d in dist.items() if m not in expected)  # no tie at the cut
        obs, _ = env.reset(seed=0)
        action = ps.selector_policy(env, agent, "nearest", k, 0).act(obs[agent], env.rng)
        others = [m for m in range(len(sc.bus)) if m != i]
        assert sorted(np.asarray(others)[action[3:] > 0].tolist()) == sorted(expected)


def test_independent_random_k_leaves_the_shared_generator_alone() -> None:
    sel = ps.IndependentRandomPeers(8, 0, 3, seed=5)
    shared = np.random.default_rng(1)
    state = shared.bit_generator.state
    sel.reset()
    first = [sel.choose(None, shared).tolist() for _ in range(20)]
    assert shared.bit_generator.state == state
    assert all(len(set(c)) == 3 and 0 not in c for c in first)
    replay = ps.IndependentRandomPeers(8, 0, 3, seed=5)
    replay.reset()
    assert [replay.choose(None, shared).tolist() for _ in range(20)] == first  # episode 0 replays


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--scenario-case", "huge"], "--scenario-case"),
        (["--scenario-case", "tiny", "--k", "4"], "--k"),
        (["--timesteps", "0"], "--timesteps"),
        (["--eval-episodes", "-1"], "--eval-episodes"),
        (["--agent", "nobody"], "--agent"),
        (["--seeds", "1", "1"], "--seeds"),
        (["--fee", "nan"], "--fee"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exc:
        ps.parse_args(argv)
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("python -m eval.peer_selection: error:") and needle in err[0]


@pytest.mark.slow
def test_cli_runs_end_to_end_on_tiny(tmp_path: Path) -> None:
    pytest.importorskip("stable_baselines3")
    argv = ["--scenario-case", "tiny", "--k", "1", "--seeds", "0", "1", "--timesteps", "384",
            "--eval-episodes", "1", "--out", str(tmp_path)]  # fmt: skip
    res = subprocess.run(
        [sys.executable, "-m", "eval.peer_selection", *argv], cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert res.returncode in (0, 1), res.stderr  # PASS/FAIL is a result, not a crash
    result = json.loads((tmp_path / ps.RESULTS_FILE).read_text())
    assert [r["seed"] for r in result["rows"]] == [0, 1] and result["k"] == 1
    for r in result["rows"]:
        assert len(r["sets"]) == 3 and r["best"] == max(r["sets"].values()) >= r["median"] >= r["worst"]
        assert {"learned", *ps.SELECTORS, "gap_share", "acceptance"} <= set(r)
    table = (tmp_path / ps.TABLE_FILE).read_text()
    assert "| mean |" in table and "share of gap" in table
    assert (tmp_path / ps.FIGURE_FILE).stat().st_size > 0

"""The learned-strategy study: slot gains, search, population points and the CLI, against hand-made references."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval import learned_strategy as ls
from eval._cli import json_safe

ROOT = Path(__file__).resolve().parents[2]


def ask_retail(obs: np.ndarray) -> np.ndarray:
    """Quotes the retail price with the whole position on either side: a seller asks the buyers' value."""
    return np.array([1.0, 1.0, 0.0], dtype=np.float32)


def bid_feed_in(obs: np.ndarray) -> np.ndarray:
    """Quotes the feed-in price with the whole position: a buyer bids the sellers' cost."""
    return np.array([-1.0, 1.0, 0.0], dtype=np.float32)


def test_slots_are_the_big_seller_and_a_buyer_without_pv() -> None:
    from p2p_gym.scenarios import load_scenario

    cfg = ls.market("uniform")
    sc = load_scenario(cfg.scenario, **cfg.scenario_overrides)
    pv = dict(zip(sc.agent_ids, sc.pv_kwp, strict=True))
    where = ls.slots()
    assert sum(v > 0 for v in pv.values()) == 2  # the benchmark's two sellers
    assert pv[where["seller"]] == max(pv.values())
    assert pv[where["buyer"]] == 0


@pytest.mark.parametrize("mechanism", ["pay_as_bid", "mcafee"])
def test_a_truthful_rule_in_the_slot_gains_exactly_zero(mechanism: str) -> None:
    from agents.strategic import Truthful
    from p2p_gym.rollout import truthful_action
    from training.policies import ModelPolicy

    seller = ls.slots()["seller"]
    assert ls.slot_gain(mechanism, Truthful(3), seller, days=1) == 0.0
    wrapped = ModelPolicy(lambda obs: truthful_action(obs, 3))  # a "trained" model that learned truthful
    assert ls.slot_gain(mechanism, wrapped, seller, days=1) == 0.0


def _sold_per_step(mechanism: str, policy: object, slot: str) -> tuple[np.ndarray, np.ndarray]:
    """kWh the slot sells per step and the retail − feed-in spread of the step, on the first held-out day."""
    from p2p_gym.envs import parallel_env
    from p2p_gym.rollout import play

    env = parallel_env(config=ls.market(mechanism))
    sc = env.scenario

    def record(e: object, infos: dict, _r: object) -> tuple[float, float]:
        t = env.last_outcome.t
        return infos[slot]["p2p_sold_kwh"], float(sc.retail_price[t] - sc.feed_in_price[t])

    ep = play(env, {slot: policy}, np.random.default_rng(0), seed=ls.EVAL_SEED, on_step=record)[0]
    rec = np.asarray(ep.records)
    return rec[:, 0], rec[:, 1]


def test_asking_retail_under_pay_as_bid_earns_half_the_spread_more_per_kwh_sold() -> None:
    # Truthful buyers bid retail. A truthful seller (ask = feed-in) sells at the midpoint (k = 0.5); asking retail it
    # sells the same kWh (the accepted quantities do not depend on prices that still cross) at retail: it gains
    # Σ_t sold_t · (retail_t − feed_in_t) / 2.
    seller = ls.slots()["seller"]
    sold, spread = _sold_per_step("pay_as_bid", ask_retail, seller)
    sold_truthful, _ = _sold_per_step("pay_as_bid", None, seller)
    assert sold.sum() > 0.1  # it still sells
    np.testing.assert_allclose(sold, sold_truthful, atol=1e-12)
    gain = ls.slot_gain("pay_as_bid", ask_retail, seller, days=1)
    assert gain > 0
    assert gain == pytest.approx(float((sold * spread / 2).sum()), rel=1e-9)


@pytest.mark.parametrize("mechanism", ["mcafee", "vcg"])
def test_no_misreport_pays_in_the_truthful_auctions(mechanism: str) -> None:
    where = ls.slots()
    for policy in (ask_retail, bid_feed_in, "markup:0.3"):
        for slot in where.values():
            assert ls.slot_gain(mechanism, policy, slot, days=1) <= 1e-12


def test_profit_difference_equals_savings_difference() -> None:
    # The study measures gains as savings differences (eval.strategic.rollout); the learners' reward is money.
    from training.policies import play

    seller = ls.slots()["seller"]
    base = play(ls.market("uniform"), {}, episodes=2, seed=ls.EVAL_SEED)
    dev = play(ls.market("uniform"), {seller: ask_retail}, episodes=2, seed=ls.EVAL_SEED)
    profit = dev.episode_reward[seller] - base.episode_reward[seller]
    assert ls.slot_gain("uniform", ask_retail, seller, days=2) == pytest.approx(profit, abs=1e-9)
    assert profit > 0


def test_dropping_the_reporting_grid_check_moves_no_money() -> None:
    from eval.bench import TASKS
    from eval.strategic import rollout
    from p2p_gym.sim import MarketConfig

    bench = MarketConfig.from_dict({**TASKS["strategic-uniform-v1"].market, "day_split": "test"})
    spec = {ls.slots()["seller"]: "markup:0.5", ls.slots()["buyer"]: "markup:0.1"}
    with_grid = rollout(bench, spec, days=1, seed=ls.EVAL_SEED, optimum=False)
    assert with_grid.line_loading_pct.size  # the benchmark's market checks the grid
    without = ls.day_rollouts("uniform", spec, days=1)[0]
    np.testing.assert_allclose(with_grid.savings, without.savings, atol=1e-12)


def test_search_exploitability_of_the_seller_under_pay_as_bid() -> None:
    seller = ls.slots()["seller"]
    res = ls.search_exploitability("pay_as_bid", seller, days=1, deviations=("markup:0.1", "markup:0.5"))
    assert res["gains"]["markup:0.5"] > res["gains"]["markup:0.1"] > 0
    assert res["best"] == "markup:0.5" and res["exploitability"] == res["gains"]["markup:0.5"]
    none = ls.search_exploitability("vcg", seller, days=1, deviations=("markup:0.5",))
    assert none["exploitability"] == 0.0


@pytest.mark.parametrize("mechanism", ls.POPULATION_MECHANISMS)
def test_truthful_population_realises_the_optimum(mechanism: str) -> None:
    # With fixed positions truthful bids maximise the reported welfare, which is the true welfare.
    p = ls.population_point(mechanism, "truthful", days=1)
    assert p["gains"] > 0
    assert p["poa"] == pytest.approx(1.0, abs=1e-9)
    assert p["efficiency"] == pytest.approx(1.0, abs=1e-9)
    assert p["seller_markup_mean"] == 0.0 and p["buyer_markup_mean"] == 0.0


def test_populations_that_shade_past_the_midpoint_do_not_trade() -> None:
    # Markup m: sellers ask x = m, buyers bid x = 1 − m (normalised price); for m > 0.5 no quotes cross.
    crossing = ls.population_point("pay_as_bid", "markup:0.4", days=1)
    assert crossing["poa"] == pytest.approx(1.0, abs=1e-9)  # fixed positions: every crossing kWh still trades
    apart = ls.population_point("pay_as_bid", "markup:0.6", days=1)
    assert apart["gains"] == 0.0 and apart["efficiency"] == 0.0 and apart["poa"] == math.inf
    assert apart["seller_markup_mean"] > 0 > apart["buyer_markup_mean"]


def test_population_schedule_rounds_to_rollouts_and_points() -> None:
    rollout = 96 * ls.POPULATION_ENVS * 8
    for steps, points in ((1, 1), (1, 8), (24_576, 8), (30_000, 3)):
        total, every = ls.population_schedule(steps, points)
        assert total == every * points
        assert every % rollout == 0
        assert total >= steps * 8
        assert total - steps * 8 < rollout * points


def test_summary_and_tables() -> None:
    assert ls.summary([1.0, 3.0]) == (2.0, 1.0)
    assert ls.summary([1.0, math.inf])[0] == math.inf
    assert all(math.isnan(v) for v in ls.summary([]))
    rows = [{
        "mechanism": "vcg", "side": "seller", "slot": "prosumer_1", "truthful_profit": 0.5, "learned": [0.0, -0.2],
        "learned_mean": -0.1, "learned_sd": 0.1, "search": 0.0, "search_best": "markup:0.1",
        "search_gains": {"markup:0.1": -0.0},
    }]  # fmt: skip
    table = ls.exploit_table(rows, seeds=2)
    assert "| vcg | seller (prosumer_1) | 0.500 | -0.100 ± 0.100 | 0.000 | markup:0.1" in table
    point = {"steps": 10, "poa": 2.0, "efficiency": 0.5, "gains": 1.0, "optimal_gains": 2.0,
             "seller_markup_mean": 1.0, "buyer_markup_mean": -0.5}  # fmt: skip
    pop = {"uniform": {"truthful": {**point, "poa": 1.0}, "curves": [[point], [{**point, "poa": math.inf}]]}}
    text = ls.population_table(pop)
    assert "| uniform | truthful | 1.000 ± 0.000 |" in text
    assert "| uniform | PPO shared (2 seeds, 10 steps) | inf |" in text
    assert json.loads(json.dumps(json_safe({"x": (math.inf, np.float64(1.5), np.int64(2))}))) == {
        "x": [None, 1.5, 2]
    }


@pytest.mark.parametrize(
    "argv",
    [["--seeds", "0"], ["--part", "nope"], ["--mechanisms", "uniform,bogus"], ["--timesteps", "-5"],
     ["--days", "x"]],
)  # fmt: skip
def test_bad_options_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ls.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m eval.learned_strategy: error:") and "\n" not in err


@pytest.mark.slow
def test_cli_end_to_end_with_tiny_budgets(tmp_path: Path) -> None:
    out = tmp_path / "figs"
    cmd = [sys.executable, "-m", "eval.learned_strategy", "--part", "all", "--seeds", "1", "--timesteps", "96",
           "--days", "1", "--points", "2", "--mechanisms", "pay_as_bid,vcg", "--out", str(out),
           "--runs", str(tmp_path / "runs")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "learned exploitability" in proc.stdout and "price of anarchy" in proc.stdout
    res = json.loads((out / ls.RESULTS_FILE).read_text())
    assert [(r["mechanism"], r["side"]) for r in res["exploit"]["rows"]] == [
        ("pay_as_bid", "seller"),
        ("pay_as_bid", "buyer"),
        ("vcg", "seller"),
        ("vcg", "buyer"),
    ]
    assert all(len(r["learned"]) == 1 for r in res["exploit"]["rows"])
    for mech in ls.POPULATION_MECHANISMS:
        curve = res["population"]["results"][mech]["curves"][0]
        assert [p["steps"] for p in curve] == [768, 1536]  # a checkpoint per rollout of 8 copies × 96 steps
        assert res["population"]["results"][mech]["truthful"]["poa"] == pytest.approx(1.0)
    assert (out / ls.FIGURE_FILE).stat().st_size > 10_000
    assert (tmp_path / "runs" / "population-uniform-s0" / "checkpoints").is_dir()

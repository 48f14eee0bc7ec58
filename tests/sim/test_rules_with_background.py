"""The DSO's linear rules on a scenario with background injections (``mvlv``): the lines the rules see at risk are
those the linear model's own check (with the background) loads above the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym import sim
from p2p_gym.grid import GridModel
from p2p_gym.scenarios.mvlv import build_mvlv


@pytest.fixture(scope="module")
def small_mvlv():  # type: ignore[no-untyped-def]
    return build_mvlv(days=2, n_platforms=2, max_prosumers=60)


def test_at_risk_lines_include_the_background_flows(small_mvlv) -> None:  # type: ignore[no-untyped-def]
    sc = small_mvlv
    threshold = 20.0  # low enough that the MV lines carrying the background are at risk
    cfg = sim.MarketConfig(
        grid="linear", mechanism="bilateral", grid_policy="preblock", block_threshold_pct=threshold,
        coordination="isolated", scenario=sc.name,
    )  # fmt: skip
    static = sim.build(cfg, sc)
    model = GridModel(sc, "linear")
    state = sim.initial_state(static, days=[0])
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(48):
        t = int(state.t[0])
        forecast = sc.pv_kw[t] - sc.load_kw[t]
        loading = model.check_batch(forecast[None], sc.background_kw[t][None]).line_loading_pct[0]
        state, out = sim.step(static, state, rng.uniform(-1, 1, (1, static.n, static.n_actions)))
        assert out.at_risk_lines[0] == int((loading >= threshold).sum())
        seen += out.at_risk_lines[0]
        assert abs(out.money_balance[0]) < 1e-9
    assert seen > 0
    # without the background the rule would see (almost) nothing at risk: the background is what loads the MV lines
    bare = model.check_batch((sc.pv_kw[0] - sc.load_kw[0])[None]).line_loading_pct[0]
    assert int((bare >= threshold).sum()) < seen / 48

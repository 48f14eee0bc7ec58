"""Shapley value and core of the market game: axioms, hand-worked games, LP coalition values, sampling."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.errors import MarketError
from p2p_gym.games import (
    CoalitionalGame,
    MarketGame,
    core_violation,
    shapley_exact,
    shapley_sampled,
    solve_shapley,
)
from p2p_gym.market import Orders, clear
from p2p_gym.market.settlement import settle
from tests.games.reference import coalition_value, random_book, shapley_by_permutations

R, F = 0.30, 0.10


def _table(n: int, fn) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array([fn(frozenset(i for i in range(n) if s >> i & 1)) for s in range(2**n)], dtype=float)


def test_known_three_player_game() -> None:
    # v(i) = 0, v(12) = 90, v(13) = 80, v(23) = 70, v(123) = 120; by hand φ = (45, 40, 35)
    vals = {frozenset(): 0, frozenset({0, 1}): 90, frozenset({0, 2}): 80, frozenset({1, 2}): 70,
            frozenset({0, 1, 2}): 120}  # fmt: skip
    game = CoalitionalGame.from_table(_table(3, lambda s: vals.get(s, 0.0)))
    np.testing.assert_allclose(shapley_exact(game), [45.0, 40.0, 35.0])
    core = core_violation(game, shapley_exact(game))
    assert core.exact and core.violation == pytest.approx(5.0)  # x1 + x2 = 85 < v(12) = 90
    assert core.coalition.tolist() == [True, True, False]


def test_market_book_by_hand_with_a_side_payment() -> None:
    # one buyer 0.30 × 1, sellers 0.10 × 1 and 0.15 × 1: v(B,S1) = 0.2, v(B,S2) = 0.15, v(N) = 0.2
    book = Orders(agent=[0, 1, 2], is_buy=[True, False, False], price=[0.3, 0.1, 0.15], quantity=[1, 1, 1])
    res, d = solve_shapley(book, R, F)
    np.testing.assert_allclose(d.shapley, [0.125, 0.05, 0.025])  # (0+0+.2+.15+.2+.2)/6, (.2+.05+.05)/6
    assert d.exact and d.grand_value == pytest.approx(0.2)
    np.testing.assert_allclose(d.side_payment, [0.0, 0.0, 0.025])  # the second seller does not trade
    assert res.paid().sum() - res.received().sum() == pytest.approx(0.025)
    assert d.operator_margin == pytest.approx(0.025)
    assert d.core is not None and d.core.violation == pytest.approx(0.025)  # {B, S1} gets 0.175 < 0.2
    np.testing.assert_allclose(res.paid(3), [0.3 - 0.125, 0.0, 0.0])
    np.testing.assert_allclose(res.received(3), [0.0, 0.1 + 0.05, 0.0])


def test_empty_core() -> None:
    game = CoalitionalGame.from_table(_table(3, lambda s: 1.0 if len(s) >= 2 else 0.0))  # majority game
    phi = shapley_exact(game)
    np.testing.assert_allclose(phi, [1 / 3] * 3)
    assert core_violation(game, phi).violation == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    for x in rng.dirichlet(np.ones(3), size=50):  # no efficient allocation is in the core
        assert core_violation(game, x).violation > 0


@pytest.mark.parametrize("seed", range(3))
def test_axioms_on_table_games(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 5
    v = np.concatenate([[0.0], rng.uniform(0, 10, 2**n - 1)])
    u = np.concatenate([[0.0], rng.uniform(-5, 5, 2**n - 1)])
    gv, gu = CoalitionalGame.from_table(v), CoalitionalGame.from_table(u)
    phi_v, phi_u = shapley_exact(gv), shapley_exact(gu)
    assert phi_v.sum() == pytest.approx(v[-1])  # efficiency
    np.testing.assert_allclose(shapley_exact(CoalitionalGame.from_table(v + u)), phi_v + phi_u)  # additivity
    ref = shapley_by_permutations(list(range(n)), lambda s: v[sum(1 << i for i in s)])
    np.testing.assert_allclose(phi_v, [ref[i] for i in range(n)])


@pytest.mark.parametrize("seed", range(3))
def test_market_game_values_match_an_lp(seed: int) -> None:
    rng = np.random.default_rng(seed)
    book = random_book(rng, 6, multi=True)
    game = MarketGame.from_book(book, R, F)
    masks = ((np.arange(2**game.n_players)[:, None] >> np.arange(game.n_players)) & 1).astype(bool)
    got = game.value(masks)
    for s in range(0, len(masks), 5):
        members = set(game.players[masks[s]].tolist())
        ref = coalition_value(book.agent, book.is_buy, book.price, book.quantity, R, F, members)
        assert got[s] == pytest.approx(ref, abs=1e-9)


def test_symmetry_null_player_and_efficiency() -> None:
    # agents 1 and 2 identical; agent 3 bids below every ask (null); agent 4 has no order
    book = Orders(agent=[0, 1, 2, 3], is_buy=[True, False, False, True], price=[0.28, 0.12, 0.12, 0.05],
                  quantity=[3.0, 2.0, 2.0, 4.0])  # fmt: skip
    _, d = solve_shapley(book, R, F, n_agents=5)
    assert d.shapley[1] == pytest.approx(d.shapley[2])
    assert d.shapley[3] == pytest.approx(0.0, abs=1e-15) and d.shapley[4] == 0.0
    assert d.shapley.sum() == pytest.approx(d.grand_value)
    assert d.grand_value == pytest.approx((0.28 - 0.12) * 3)


def test_competitive_payoff_is_in_the_core() -> None:
    # the gains at a Walrasian price of the efficient allocation are in the core (Shapley & Shubik 1971)
    rng = np.random.default_rng(4)
    for _ in range(5):
        book = random_book(rng, 8)
        lim = np.where(book.is_buy, np.minimum(book.price, R), np.maximum(book.price, F))
        res = clear(Orders(book.agent, book.is_buy, lim, book.quantity), "uniform")
        fill = res.filled
        levels = np.unique(lim)
        cands = np.concatenate([levels, 0.5 * (levels[1:] + levels[:-1])])
        full, none = fill >= book.quantity - 1e-12, fill <= 1e-12
        ok = [p for p in cands if np.all(np.where(book.is_buy, lim > p, lim < p) <= full)
              and np.all(np.where(book.is_buy, lim < p, lim > p) <= none)]  # fmt: skip
        p = ok[0]
        g = np.bincount(book.agent, np.where(book.is_buy, lim - p, p - lim) * fill, 8)
        game = MarketGame.from_book(book, R, F)
        assert core_violation(game, g[game.players]).violation <= 1e-12


def test_sampled_within_four_standard_errors() -> None:
    rng = np.random.default_rng(5)
    book = random_book(rng, 9)
    game = MarketGame.from_book(book, R, F)
    exact = shapley_exact(game)
    phi, se = shapley_sampled(game, 3000, np.random.default_rng(1))
    assert phi.sum() == pytest.approx(exact.sum())  # every permutation is efficient
    assert np.all(np.abs(phi - exact) <= 4 * se + 1e-12)
    # the generic prefix evaluation agrees with the market game's cumulative one
    perms = np.random.default_rng(2).permuted(np.tile(np.arange(game.n_players), (7, 1)), axis=1)
    np.testing.assert_allclose(game.prefix_values(perms), CoalitionalGame.prefix_values(game, perms))


def test_large_book_is_sampled_and_balanced() -> None:
    rng = np.random.default_rng(6)
    book = random_book(rng, 30)
    with pytest.raises(MarketError, match="rng"):
        solve_shapley(book, R, F)
    res, d = solve_shapley(book, R, F, rng=np.random.default_rng(0), n_permutations=300, n_core_samples=2000)
    assert not d.exact and d.n_permutations == 300 and np.all(d.std_error >= 0)
    assert d.shapley.sum() == pytest.approx(d.grand_value)
    assert d.core is not None and not d.core.exact
    net = np.bincount(book.agent, np.where(book.is_buy, -book.quantity, book.quantity), 30)
    st = settle(res, net, R, F)
    assert st.money_imbalance == pytest.approx(d.operator_margin)  # Σ bill − grid = what the operator keeps
    assert res.paid(30).sum() - res.received(30).sum() == pytest.approx(d.side_payment.sum())
    # each trader's savings + side payment − (retail − v̂)-discounts = φ: its gain is its Shapley value
    from p2p_gym.games import gains

    g = gains(book, res, R, F, 30) + d.side_payment
    np.testing.assert_allclose(g, d.shapley, atol=1e-12)

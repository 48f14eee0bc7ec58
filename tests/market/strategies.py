"""Hypothesis strategies for random order books (prices on a coarse grid so that ties are frequent)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from p2p_gym.market import Orders

PRICES = st.integers(1, 12).map(lambda i: i / 20.0)  # 0.05 .. 0.60 per kWh, many ties
# Quantities on a 1e-4 grid: the engine drops dust below 1e-12 kWh, an ambiguity the tests need not probe.
QUANTITIES = st.one_of(
    st.integers(0, 6).map(float), st.floats(0.0, 5.0, allow_nan=False).map(lambda x: round(x, 4))
)


@st.composite
def books(draw, max_orders: int = 24, n_agents: int = 8, disjoint: bool = False):  # type: ignore[no-untyped-def]
    """A random book. With ``disjoint``, buyers are agents < n/2 and sellers ≥ n/2 (no self-crossing)."""
    k = draw(st.integers(0, max_orders))
    is_buy = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    half = n_agents // 2
    agent = [
        draw(st.integers(0, half - 1) if b else st.integers(half, n_agents - 1))
        if disjoint
        else draw(st.integers(0, n_agents - 1))
        for b in is_buy
    ]
    price = draw(st.lists(PRICES, min_size=k, max_size=k))
    quantity = draw(st.lists(QUANTITIES, min_size=k, max_size=k))
    return Orders(
        agent=np.array(agent, dtype=np.int64),
        is_buy=np.array(is_buy, dtype=bool),
        price=np.array(price, dtype=float),
        quantity=np.array(quantity, dtype=float),
    )

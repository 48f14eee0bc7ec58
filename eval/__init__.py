"""eval package of p2p_gym."""

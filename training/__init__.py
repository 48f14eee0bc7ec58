"""Training of bidding and peer-selection policies on the p2p_gym environment.

* :mod:`training.config` — :class:`~training.config.TrainArgs` (one docstring per field, YAML round trip) and
  the default hyperparameters per algorithm;
* :mod:`training.sb3` — stable-baselines3 in the ``shared``, ``independent`` and ``single`` settings;
* :mod:`training.rllib` — Ray RLlib PPO on the PettingZoo env (extra ``ray``);
* :mod:`training.cli` / :mod:`training.evaluate` — ``p2p-gym train`` and ``p2p-gym evaluate-policy``.

Everything heavy (torch, stable-baselines3, ray) is imported lazily inside the functions that need it.
"""

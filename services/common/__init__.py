"""Pieces both services share: the LanceDB feature store, names, auth."""

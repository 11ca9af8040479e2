"""Training tcodec's own weights on this machine's CPUs: ``python -m tcodec.training
RECIPE.toml`` (:mod:`tcodec.training.taco`)."""

"""Triton serving: the stage logic behind each model in model_repository/ and the configs that describe them."""

"""Goodfellow, Shlens & Szegedy 2015, "Explaining and Harnessing Adversarial Examples" (in progress)."""

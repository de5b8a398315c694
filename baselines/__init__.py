"""Baseline translation methods: original, CycleGAN, CUT/FastCUT, Gatys."""

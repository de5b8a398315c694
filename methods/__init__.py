"""The memory-bank CycleGAN of Tomei et al. 2018 ("ours") and its parts."""

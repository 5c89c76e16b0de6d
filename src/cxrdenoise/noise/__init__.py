"""Noise types as a registry, like the models: each is one small class registered by name.

A noise type (`NoiseModel`) holds its parameters (read from the config by `from_config`), says at which levels the
config makes it (`levels`), how a level is printed and spelt in paths (`label`: `0.1`, as in `sigma0.1`), and turns
a clean image into a noisy one (`apply(clean, rng, level)`); `rng` is the image's own stream
(`NoiseModel.rng(seed, image_id, level)`: a function of the seed, the image id and the level label only). The noise
stage (`cxrdenoise data noise`, `shards.noise_shard`) builds the entry with `make_noise(name, params)` and calls its
`apply` for every image. `noise.type` in the config names the entry the models are trained at; `noise.literature`
is always the zero-mean entry.

Entries: `gaussian_study` (the study's obfuscation, clip(clean + N(mean, sigma^2), 0, 1)) and
`gaussian_literature` (the same formula at the literature's zero mean and sigmas), both in `gaussian.py`. A new
type is one module in this package with `@register("name")` (found without a list: every module here is imported
on the first look-up), its `noise.<name>` entry in workflow/schemas/config.schema.yaml, and a test.

Standard library and numpy only: the noise job imports neither torch nor pandas.
"""

from .registry import (NoiseModel, NoisePlan, available_noises, get_noise, make_noise, noise_plan,  # noqa: F401
                       register)

"""cxrdenoise: reproducible training and benchmarking of chest X-ray denoisers."""

__version__ = "0.1.0"

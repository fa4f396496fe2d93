"""r1: deploy DeepSeek-R1 distills on vLLM and talk to them from a terminal or a pipeline."""

__version__ = "0.1.0"

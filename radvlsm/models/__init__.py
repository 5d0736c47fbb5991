"""Rad-VLSM networks: pretrained backbones, prompt decoder, alignment, reliability and diagnosis heads."""

"""Inference pipelines of Tessera: prior sampling -> codebook lookup -> decoding.

Its contents arrive with the issue "The generation pipeline"; the package exists now so the
distribution's layout (tokenizer, prior, pipelines) is fixed from the start.
"""

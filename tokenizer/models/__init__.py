"""The tokenizer architectures (vqgan, vqvae2, vae), each with its config at the top of its file; what they share
(base: config and module bases, saved folders, fingerprints; autoencoder: encoder and decoder; quantizer: the
codebook); and loading, which maps an architecture to its class. The public names are re-exported by `tokenizer`."""

"""Stage two of Tessera: priors over code indices (GPT, PixelCNN) and the index-file format.

Its contents arrive with the issues "Tokenize datasets into index files" and "Stage two"; the package
exists now so the distribution's layout (tokenizer, prior, pipelines) is fixed from the start.
"""

"""Model development: synthetic data (`synth`), real-crop data and batches (`data`), training (`train`),
the fixed document splits (`splits`, splits.json) and line building (`lines`).

Nothing a user's inference process loads: `crnn` itself (model, charset, decoding, lexicon, image,
checkpoint, recognizer) never imports this package.
"""

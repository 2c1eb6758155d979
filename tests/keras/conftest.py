import os

# Keras reads its backend once, at import: choose PyTorch before any test imports it.
os.environ.setdefault("KERAS_BACKEND", "torch")

import os

# Keras 2 (tf_keras) everywhere: must be set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# Image for Kubeflow Pipelines / Vertex AI runs of the coldstart components.
# Debian 13 (glibc 2.41) takes the manylinux_2_39 TFX 1.21 wheels as they are: no re-tagging,
# no private C runtime (those are only for the Debian 12 development machines).
FROM python:3.11-slim-trixie

# pyfarmhash (a tfx dependency) builds from source.
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*

ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1

WORKDIR /pipeline
COPY requirements.lock setup.py ./
COPY pipeline pipeline
COPY components components
COPY trainer trainer
COPY schemas schemas
RUN pip install --no-cache-dir -c requirements.lock pip wheel \
    && pip install --no-cache-dir -c requirements.lock .

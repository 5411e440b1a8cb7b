# syntax=docker/dockerfile:1
# ragqa: the staff UI, the HTTP API and the ingest command in one image. Build stage compiles what needs
# compiling; the final stage runs as a non-root user and never reaches a model hub
# (HF_HUB_OFFLINE): the embedding model is inside a wheel, gpt-oss is mounted. Its one build tool
# is the C compiler for the engine's CPU decode kernel (llm/cpu_kernel.c), which is compiled for
# the CPU it runs on at the first decoded token (without it, CPU decoding is about half as fast).

ARG PYTHON=3.11
FROM python:${PYTHON}-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/ragqa
ENV PATH=/opt/ragqa/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, from the index that matches the machine: CUDA 12.8 wheels by default (the GPU
# profile needs them); build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
# for a smaller CPU-only image.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN pip install --index-url ${TORCH_INDEX} torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY rag rag
COPY llm llm
COPY app app
COPY ragqa ragqa
# Optional extras, e.g. --build-arg RAGQA_EXTRAS=otlp for traces sent over OTLP (RAGQA_TRACES).
ARG RAGQA_EXTRAS=
RUN pip install ".${RAGQA_EXTRAS:+[$RAGQA_EXTRAS]}" && pip uninstall -y pip setuptools

FROM python:${PYTHON}-slim-bookworm
# tesseract-ocr with its English data: OCR of scans and images (ingest/ocr.py reads the data
# through tesserocr); other languages: add tesseract-ocr-LANG here and set RAGQA_OCR_LANGUAGES.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev tesseract-ocr tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin ragqa \
    && mkdir -p /data /inbox && chown ragqa:ragqa /data
COPY --from=build /opt/ragqa /opt/ragqa
ENV PATH=/opt/ragqa/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    RAGQA_HOME=/data
USER ragqa
WORKDIR /data
VOLUME ["/data"]
# 8501: the staff UI (`ragqa ui`); 8000: the HTTP API (`ragqa serve`, its own healthcheck in compose).
EXPOSE 8501 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read() != b'ok')"]
# The same console script users run: `ragqa ui`, `ragqa ingest`, `ragqa check`...
ENTRYPOINT ["ragqa"]
# Listening on 0.0.0.0 inside the container; compose publishes the port on the host's 127.0.0.1
# unless RAGQA_BIND says otherwise, which needs sign-in (docs/deploy.md).
CMD ["ui", "--address", "0.0.0.0", "--port", "8501", "--published-on-loopback"]

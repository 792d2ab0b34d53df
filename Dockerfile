# CPU image by default. For CUDA:
#   docker build --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t audits:cuda .
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# CUDA bases ship without Python; the python base already has it.
RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from the chosen index, so the project's ">=2.10" never pulls another build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /app
COPY pyproject.toml README.md ./
COPY audits ./audits
COPY models ./models
COPY dashboard ./dashboard
COPY .streamlit ./.streamlit
COPY schemas ./schemas
RUN pip install .

RUN useradd --create-home auditor && mkdir -p /out /app/audit-store && chown auditor /out /app/audit-store
USER auditor
VOLUME ["/out", "/app/audit-store"]
EXPOSE 8501
# The main job: the dashboard. Inside a container it must listen on all interfaces to be
# reachable through -p; put it behind authentication (see README "Access") before exposing it.
CMD ["audits", "dashboard", "--host", "0.0.0.0", "--port", "8501"]
# Headless alternative: docker run ... audits demo --out /out

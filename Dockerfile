# One image for every modelyard role; docker-compose.yml picks the role per container.
FROM python:3.11-bookworm

RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends cmake g++ curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH="/root/.cargo/bin:${PATH}"

WORKDIR /app
COPY . .
# Same install as the README commands: .venv with stubs, the Rust extension, llama.cpp.
RUN scripts/setup
ENV PATH="/app/.venv/bin:${PATH}" \
    MODELYARD_DATA_DIR=/data

EXPOSE 50051
ENTRYPOINT ["modelyard"]
CMD ["up", "--listen", "0.0.0.0:50051"]

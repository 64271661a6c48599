# syntax=docker/dockerfile:1
# Build stage: resolve and build wheels for the project and its dependencies.
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies first, so a source change does not rebuild them.
COPY pyproject.toml README.md ./
RUN mkdir -p bot cogs && touch bot/__init__.py cogs/__init__.py \
    && pip wheel --wheel-dir /wheels . \
    && rm /wheels/wanbot-*.whl
COPY bot ./bot
COPY cogs ./cogs
RUN pip wheel --no-deps --wheel-dir /wheels .

# Run stage: only the installed wheels, as an unprivileged user.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \
    DATABASE_PATH=/data/wanbot.db
RUN useradd --create-home --uid 10001 wanbot && mkdir -p /data && chown wanbot /data
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels wanbot && rm -rf /wheels
USER wanbot
WORKDIR /home/wanbot
VOLUME ["/data"]
# The process handles SIGTERM as a graceful shutdown.
STOPSIGNAL SIGTERM
ENTRYPOINT ["wanbot"]
CMD ["run"]

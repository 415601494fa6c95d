# The atrium API image. `docker compose up` (compose.yaml) builds and runs it; the same
# image runs the one-shot migrations (`atrium db upgrade`, `atrium tenants migrate`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The app runs as an unprivileged user; the code it runs stays owned by root.
RUN groupadd --system --gid 10001 atrium \
 && useradd --system --uid 10001 --gid atrium --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin atrium

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes,
# not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The folders are mapped to `atrium.*` by setuptools' package-dir (see pyproject.toml).
# At run time everything (migrations included) is imported from site-packages; the
# copies in /app only serve developers running `alembic` with alembic.ini.
COPY README.md alembic.ini setup.py ./
COPY platform/ platform/
COPY tenants/ tenants/
COPY migrations/ migrations/
COPY scripts/ scripts/
RUN pip install --no-cache-dir --no-deps . \
 && rm -rf build atrium.egg-info \
 && atrium --help > /dev/null

USER atrium

EXPOSE 8000

CMD ["atrium", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]

# A container for hosts that run images rather than Procfiles. The process types are the
# Procfile's: the default command is the web process; run `bridge worker` or `bridge migrate`
# with the same image for the others.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 bridge
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY config ./config
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER bridge
ENV PORT=8000 PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["sh", "-c", "exec bridge serve --host 0.0.0.0 --port ${PORT}"]

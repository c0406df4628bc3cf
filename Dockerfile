# syncd in a container: `docker build -t syncd .` then
#   docker run -v syncd-state:/var/lib/syncd -v ./syncd.yaml:/etc/syncd/syncd.yaml:ro -p 8080:8080 syncd
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY syncd ./syncd
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# git is not needed at run time (pygit2 bundles libgit2); ca-certificates is, for https remotes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/syncd --shell /usr/sbin/nologin syncd \
    && mkdir -p /var/lib/syncd /etc/syncd \
    && chown syncd:syncd /var/lib/syncd
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER syncd
ENV SYNCD_CONFIG=/etc/syncd/syncd.yaml PYTHONUNBUFFERED=1
VOLUME ["/var/lib/syncd"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["syncd"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--log-format", "json"]

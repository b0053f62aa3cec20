FROM python:3.13-slim

# MALLOC_ARENA_MAX: glibc keeps two heaps, not one per thread that ever allocated; an open
# page then costs about 1 KiB less (docs/performance.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app
COPY requirements.txt .
RUN pip install --require-hashes -r requirements.txt
COPY liveroom liveroom
COPY templates templates
COPY static static
COPY locale locale
COPY manage.py .
# Assets under content-hashed names, compressed, served with a year's Cache-Control.
RUN python manage.py collectstatic --no-input -v 0

RUN useradd --no-create-home --shell /usr/sbin/nologin liveroom
USER liveroom
EXPOSE 8000
CMD ["python", "-m", "liveroom.server", "-b", "0.0.0.0", "-p", "8000"]

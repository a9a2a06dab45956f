"""`make run`: prepare the database, then run web (uvicorn), a Celery worker and Celery beat together.

Ctrl-C or SIGTERM stops all three; if one dies, the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import django


def proxy_options(allowed: list[str]) -> dict[str, object]:
    """uvicorn options believing X-Forwarded-For/-Proto only from the proxies in FORWARDED_ALLOW_IPS.

    uvicorn on its own trusts 127.0.0.1 (or its own FORWARDED_ALLOW_IPS variable), so anything on the host
    could pick its address for rate limits; with the setting empty, forwarded headers are ignored.
    """
    if not allowed:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(allowed)}


def _prepare() -> None:
    # Files the three processes create (database, broker messages, beat schedule, mail) are theirs alone.
    os.umask(0o077)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.VAR_DIR.mkdir(exist_ok=True)
    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    if not settings.DEBUG:
        call_command("collectstatic", interactive=False, verbosity=0)


def _commands(port: int, forwarded_allow_ips: list[str]) -> dict[str, list[str]]:
    python = sys.executable
    proxy = proxy_options(forwarded_allow_ips)
    proxy_flags = (
        ["--proxy-headers", "--forwarded-allow-ips", str(proxy["forwarded_allow_ips"])]
        if proxy["proxy_headers"]
        else ["--no-proxy-headers"]
    )
    return {
        "web": [
            python,
            "-m",
            "uvicorn",
            "project.asgi:application",
            "--host",
            os.environ.get("HOST", "127.0.0.1"),
            "--port",
            str(port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "5",
            *proxy_flags,
        ],
        "worker": [python, "-m", "celery", "-A", "project", "worker", "--loglevel", "INFO", "--concurrency", "2"],
        "beat": [python, "-m", "celery", "-A", "project", "beat", "--loglevel", "INFO"],
    }


def _stop(children: dict[str, subprocess.Popen]) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()


def main() -> int:
    _prepare()
    from django.conf import settings

    commands = _commands(settings.PORT, settings.FORWARDED_ALLOW_IPS)
    children = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}  # noqa: S603
    print(f"BYOK Chat is running on http://127.0.0.1:{settings.PORT}/  (Ctrl-C stops web, worker and beat)", flush=True)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with code {child.returncode}; stopping the others.", file=sys.stderr)
                exit_code, stopping = child.returncode or 1, True
                break
        else:
            time.sleep(0.5)
    _stop(children)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

"""What the Python checks of tests/ share: failing a check, the service as a child process,
and stopping cleanly on a signal."""

import ctypes
import os
import signal
import subprocess


class CheckFailed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise CheckFailed(what)


def _set_parent_death_signal():
    """In the child: SIGKILL when the thread that started it dies (Linux; best effort)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_service(binary, env):
    """The service on a free loopback port, with `env` over a minimal environment; its
    stderr (the log) is a text pipe."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOST": "127.0.0.1",
        "PORT": "0",
        "WORKERS": "2",
        "RUST_LOG": "info",
    }
    return subprocess.Popen(
        [binary],
        env=base | env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        preexec_fn=_set_parent_death_signal,
    )


def exit_on_signals():
    """SIGTERM, SIGINT, SIGHUP raise SystemExit, which unwinds through the `finally` that
    kills the service."""

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)

"""The system-metrics sampler: window arithmetic, one-shot samples, and the monitor thread.

Timing bounds are deliberately loose: the tests run on small shared machines.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import psutil
import pytest

from runsync.writer import system
from runsync.writer.system import GPU_KEYS, KEYS, Sampler, SystemMonitor, Window, gpu_inventory

pytestmark = pytest.mark.timeout(60)

RATE_KEYS = ("disk.read_bytes_per_s", "disk.write_bytes_per_s", "net.sent_bytes_per_s", "net.recv_bytes_per_s")
_MACHINE = "|".join(map(re.escape, KEYS))
_GPU = "|".join(GPU_KEYS)
_DOCUMENTED = re.compile(rf"^(?:(?:{_MACHINE})|gpu\.\d+\.(?:{_GPU}))(?:\.max)?$")


def _documented(key: str) -> bool:
    return _DOCUMENTED.match(key) is not None


def _system_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == SystemMonitor.THREAD_NAME]


class Rows:
    """Collects emit() calls; remembers the emitting thread."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, dict[str, float]]] = []
        self.threads: set[str] = set()
        self.event = threading.Event()

    def __call__(self, t: float, row: dict[str, float]) -> None:
        self.threads.add(threading.current_thread().name)
        self.rows.append((t, row))
        self.event.set()

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.rows) < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


# -- Window -------------------------------------------------------------------


def test_window_mean_and_max() -> None:
    w = Window()
    w.add({"a": 1.0, "b": 10.0})
    w.add({"a": 3.0})
    w.add({"a": 2.0, "b": -4.0, "c": 7})
    assert len(w) == 3
    assert w.result() == {
        "a": 2.0, "a.max": 3.0,
        "b": 3.0, "b.max": 10.0,  # mean over the two samples that had b
        "c": 7.0, "c.max": 7.0,
    }
    assert list(w.result()) == ["a", "a.max", "b", "b.max", "c", "c.max"]  # stable order
    assert all(type(v) is float for v in w.result().values())


def test_window_empty_and_non_finite_values() -> None:
    w = Window()
    assert w.result() == {} and len(w) == 0
    w.add({})
    assert len(w) == 1 and w.result() == {}
    w.add({"x": float("nan"), "y": float("inf"), "z": 1.0})
    assert w.result() == {"z": 1.0, "z.max": 1.0}


def test_window_max_of_negative_values() -> None:
    w = Window()
    for v in (-5.0, -2.0, -9.0):
        w.add({"k": v})
    assert w.result() == {"k": pytest.approx(-16 / 3), "k.max": -2.0}


def test_key_table_in_docstring_matches_keys() -> None:
    doc = system.__doc__ or ""
    for key in KEYS:
        assert f"``{key}``" in doc
    for name in GPU_KEYS:
        assert f"``gpu.<i>.{name}``" in doc


# -- Sampler ------------------------------------------------------------------


def test_sample_keys_and_ranges(tmp_path: Path) -> None:
    errors: list[str] = []
    s = Sampler(tmp_path, on_error=errors.append)
    first = s.sample()
    # rates need two readings: the first sample has only gauges
    assert "cpu.percent" not in first and "proc.cpu_percent" not in first
    assert not any(k in first for k in RATE_KEYS)
    time.sleep(0.2)
    row = s.sample()
    s.close()
    assert errors == []
    expected = {"cpu.percent", "memory.used_percent", "memory.used_bytes", "memory.available_bytes",
                "proc.rss_bytes", "proc.cpu_percent", "proc.threads", "disk.free_bytes"}
    if hasattr(os, "getloadavg"):
        expected |= {"load.1m", "load.5m", "load.15m"}
    if psutil.disk_io_counters() is not None:
        expected |= {"disk.read_bytes_per_s", "disk.write_bytes_per_s"}
    expected |= {"net.sent_bytes_per_s", "net.recv_bytes_per_s"}
    assert expected <= set(row), expected - set(row)
    assert all(_documented(k) for k in row), [k for k in row if not _documented(k)]
    assert all(type(v) is float and math.isfinite(v) for v in row.values())

    assert 0.0 <= row["cpu.percent"] <= 100.0
    assert 0.0 < row["memory.used_percent"] <= 100.0
    total = psutil.virtual_memory().total
    assert 0 < row["memory.used_bytes"] < total and 0 < row["memory.available_bytes"] <= total
    assert row["memory.used_bytes"] + row["memory.available_bytes"] == pytest.approx(total, rel=0.05)
    rss = psutil.Process().memory_info().rss
    assert rss * 0.5 < row["proc.rss_bytes"] < rss * 3 + (500 << 20)
    assert row["proc.threads"] >= 1
    assert 0.0 <= row["proc.cpu_percent"] <= 100.0 * (os.cpu_count() or 1) + 1
    free = psutil.disk_usage(str(tmp_path)).free
    assert row["disk.free_bytes"] == pytest.approx(free, rel=0.05, abs=256 << 20)
    for k in ("load.1m", "load.5m", "load.15m"):
        assert row.get(k, 0.0) >= 0.0


def test_no_gpu_keys_without_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    errors: list[str] = []
    s = Sampler(on_error=errors.append)
    rows = [s.sample(), s.sample()]
    s.close()
    assert not any(k.startswith("gpu.") for row in rows for k in row)
    assert errors == []
    assert gpu_inventory() == []


def test_rates_are_non_negative(tmp_path: Path) -> None:
    s = Sampler(tmp_path)
    s.sample()
    rows = []
    for i in range(3):
        with open(tmp_path / f"f{i}", "wb") as f:  # some disk traffic between samples
            f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        time.sleep(0.05)
        rows.append(s.sample())
    for row in rows:
        for k in RATE_KEYS + ("cpu.percent", "proc.cpu_percent"):
            if k in row:
                assert row[k] >= 0.0, (k, row[k])


_GRANDCHILD = "import sys; b = b'x' * (200 << 20); print('ready', flush=True); sys.stdin.read()"
_CHILD = f"import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', {_GRANDCHILD!r}]))"


def test_proc_rss_includes_descendants() -> None:
    """A grandchild holding ~200 MB shows up in proc.rss_bytes (process tree, recursively).

    (rescan_every=1: by default new children are looked for every 5th sample; pytest may have children.)"""
    s = Sampler(rescan_every=1)
    before = s.sample()["proc.rss_bytes"]
    with subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline().strip() == b"ready"
            during = s.sample()
            assert during["proc.rss_bytes"] - before > 150 << 20
            assert during["proc.threads"] >= 3  # this process + child + grandchild
        finally:
            child.stdin.close()  # the grandchild reads EOF and exits, then the child
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                for p in psutil.Process(child.pid).children(recursive=True):
                    p.kill()
                child.kill()
                child.wait()
    after = s.sample()  # the descendants are gone: no error, the sum drops again
    assert after["proc.rss_bytes"] - before < 100 << 20


def test_proc_cpu_counts_busy_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 5\nwhile time.time() < t: pass"])
    try:
        s = Sampler()
        s.sample()  # primes this process and the child
        time.sleep(0.5)
        row = s.sample()
    finally:
        child.kill()
        child.wait()
    assert row["proc.cpu_percent"] >= 20.0  # one core busy is ~100 (top-style); loose for a shared box


def test_unreadable_disk_path_is_absent_and_reported_once(tmp_path: Path) -> None:
    errors: list[str] = []
    s = Sampler(tmp_path / "missing", on_error=errors.append)
    rows = [s.sample() for _ in range(3)]
    assert all("disk.free_bytes" not in r and "memory.used_bytes" in r for r in rows)
    assert len(errors) == 1 and "disk usage" in errors[0]


def test_on_error_that_raises_is_ignored(tmp_path: Path) -> None:
    def bad(msg: str) -> None:
        raise RuntimeError("boom")

    s = Sampler(tmp_path / "missing", on_error=bad)
    assert "memory.used_bytes" in s.sample()


# -- fake NVML ----------------------------------------------------------------


class _NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


def _fake_nvml(n: int = 2, init_error: int | None = None, power_error: int | None = None) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVMLError = _NVMLError  # type: ignore[attr-defined]
    m.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    m.calls = {"init": 0, "shutdown": 0}  # type: ignore[attr-defined]

    def init() -> None:
        if init_error is not None:
            raise _NVMLError(init_error)
        m.calls["init"] += 1  # type: ignore[attr-defined]

    def shutdown() -> None:
        m.calls["shutdown"] += 1  # type: ignore[attr-defined]

    def power(h: int) -> int:
        if power_error is not None and h == 1:
            raise _NVMLError(power_error)
        return 250_000 + h  # milliwatts

    m.nvmlInit = init  # type: ignore[attr-defined]
    m.nvmlShutdown = shutdown  # type: ignore[attr-defined]
    m.nvmlSystemGetDriverVersion = lambda: b"550.54"  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: n  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    m.nvmlDeviceGetName = lambda h: b"Fake GPU" if h else "Fake GPU"  # type: ignore[attr-defined]  # old: bytes
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h:04d}"  # type: ignore[attr-defined]
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=16 << 30, used=4 << 30, free=12 << 30)  # type: ignore[attr-defined]
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=50 + h, memory=10)  # type: ignore[attr-defined]
    m.nvmlDeviceGetTemperature = lambda h, sensor: 60 + h  # type: ignore[attr-defined]
    m.nvmlDeviceGetPowerUsage = power  # type: ignore[attr-defined]
    return m


def test_gpu_metrics_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_nvml(n=2, power_error=3)  # device 1 cannot report power: NOT_SUPPORTED, silently absent
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    errors: list[str] = []
    s = Sampler(on_error=errors.append)
    row = s.sample()
    s.close()
    assert errors == []
    assert row["gpu.0.util_percent"] == 50.0 and row["gpu.1.util_percent"] == 51.0
    assert row["gpu.0.memory_used_bytes"] == float(4 << 30)
    assert row["gpu.0.memory_percent"] == pytest.approx(25.0)
    assert row["gpu.1.temperature_c"] == 61.0
    assert row["gpu.0.power_w"] == pytest.approx(250.0)
    assert "gpu.1.power_w" not in row
    assert all(_documented(k) for k in row)
    assert fake.calls == {"init": 1, "shutdown": 1}  # type: ignore[attr-defined]

    inv = gpu_inventory()
    assert inv == [
        {"index": 0, "name": "Fake GPU", "uuid": "GPU-0000", "memory_bytes": 16 << 30, "driver": "550.54"},
        {"index": 1, "name": "Fake GPU", "uuid": "GPU-0001", "memory_bytes": 16 << 30, "driver": "550.54"},
    ]
    assert fake.calls == {"init": 2, "shutdown": 2}  # type: ignore[attr-defined]


def test_gpu_read_error_is_reported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(n=2, power_error=15))  # GPU_IS_LOST
    errors: list[str] = []
    s = Sampler(on_error=errors.append)
    rows = [s.sample() for _ in range(3)]
    s.close()
    assert all("gpu.1.power_w" not in r and "gpu.1.util_percent" in r and "gpu.0.power_w" in r for r in rows)
    assert len(errors) == 1 and "GPU 1 power" in errors[0]


def test_no_driver_means_no_gpu_and_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(init_error=12))  # LIBRARY_NOT_FOUND
    errors: list[str] = []
    s = Sampler(on_error=errors.append)
    assert not any(k.startswith("gpu.") for k in s.sample())
    s.close()
    assert errors == [] and gpu_inventory() == []


# -- SystemMonitor --------------------------------------------------------------


def test_monitor_emits_windows_and_stops_promptly(tmp_path: Path) -> None:
    rows = Rows()
    errors: list[str] = []
    mon = SystemMonitor(rows, interval=0.05, window=0.2, disk_path=tmp_path, on_error=errors.append)
    assert _system_threads() == []  # nothing before start()
    t_start = time.time()
    mon.start()
    try:
        threads = _system_threads()
        assert len(threads) == 1 and threads[0].daemon
        assert rows.wait_for(2, timeout=2.0), "no window emitted"
    finally:
        t0 = time.monotonic()
        mon.stop()
        stop_took = time.monotonic() - t0
    assert stop_took < 1.0
    assert _system_threads() == [] and not mon.running
    assert rows.threads == {SystemMonitor.THREAD_NAME}
    assert errors == []
    times = [t for t, _ in rows.rows]
    assert times == sorted(times) and t_start <= times[0] <= time.time()
    for _, row in rows.rows:
        assert "memory.used_bytes" in row and "memory.used_bytes.max" in row
        assert all(_documented(k) for k in row)
    assert "cpu.percent" in rows.rows[1][1]  # a later window has rates
    n = len(rows.rows)
    mon.stop()  # idempotent: nothing more is emitted
    mon.start()  # a stopped monitor does not restart
    time.sleep(0.15)
    assert len(rows.rows) == n and _system_threads() == []


def test_stop_emits_the_partial_window() -> None:
    rows = Rows()
    mon = SystemMonitor(rows, interval=0.05, window=60.0)
    mon.start()
    time.sleep(0.3)
    assert rows.rows == []  # the window is far from over
    mon.stop()
    assert len(rows.rows) == 1
    row = rows.rows[0][1]
    assert "cpu.percent" in row and "memory.used_percent.max" in row


def test_stop_right_after_start_emits_one_row() -> None:
    rows = Rows()
    mon = SystemMonitor(rows, interval=2.0, window=30.0)
    mon.start()
    mon.stop()
    assert len(rows.rows) == 1 and "memory.used_bytes" in rows.rows[0][1]
    assert _system_threads() == []


def test_stop_before_start_is_a_no_op() -> None:
    rows = Rows()
    mon = SystemMonitor(rows)
    mon.stop()
    mon.stop()
    assert rows.rows == [] and _system_threads() == []


def test_broken_psutil_call_does_not_kill_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> float:
        raise RuntimeError("cpu counters unavailable")

    monkeypatch.setattr(psutil, "cpu_percent", broken)
    rows = Rows()
    errors: list[str] = []
    mon = SystemMonitor(rows, interval=0.05, window=0.2, on_error=errors.append)
    mon.start()
    try:
        assert rows.wait_for(2, timeout=3.0)
        assert mon.running
    finally:
        mon.stop()
    assert len(errors) == 1 and "cpu" in errors[0] and "cpu counters unavailable" in errors[0]
    for _, row in rows.rows:
        assert "cpu.percent" not in row and "memory.used_bytes" in row


def test_emit_that_raises_is_reported_once_and_sampling_continues() -> None:
    calls: list[float] = []

    def emit(t: float, row: dict[str, float]) -> None:
        calls.append(t)
        raise OSError("disk full")

    errors: list[str] = []
    mon = SystemMonitor(emit, interval=0.05, window=0.1, on_error=errors.append)
    mon.start()
    try:
        deadline = time.monotonic() + 3.0
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        mon.stop()
    assert len(calls) >= 3
    assert len(errors) == 1 and "disk full" in errors[0]


@pytest.mark.parametrize("kw", [{"interval": 0}, {"interval": -1.0}, {"window": 0}, {"interval": float("nan")}])
def test_bad_interval_or_window_rejected(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SystemMonitor(lambda t, row: None, **kw)

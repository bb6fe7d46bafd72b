"""System metrics: sample the machine every few seconds, emit window means and maxima.

A :class:`SystemMonitor` runs one daemon thread (``runsync-system``) that takes
a :class:`Sampler` reading every ``interval`` seconds (2 s by default), feeds it
to a :class:`Window`, and once per ``window`` seconds (30 s by default) calls
``emit(t, row)`` from that thread, with ``t`` the unix time of the window's
last sample and ``row`` a fresh flat ``dict[str, float]``. Averaging in the
monitor keeps the history small (one row per 30 s, not per 2 s) while ``.max``
still shows short spikes.

Training comes first. Every error inside sampling is caught: a metric that
cannot be read is absent from the sample (reported once per metric family
through the optional ``on_error(msg)``), and nothing ever escapes the thread.
GPU metrics come from NVML (module ``pynvml``, the ``gpu`` extra
``nvidia-ml-py``) when it is installed and a GPU is present; otherwise the
``gpu.*`` keys are absent and nothing is reported.

Keys
----
Every metric ``K`` in the table appears in an emitted row twice: ``K`` is the
mean and ``K.max`` the maximum over the samples of the window in which ``K``
was read. The rule is the same for gauges and for rates derived from counters.
A metric read in no sample of the window is absent from the row (both keys).

=============================  ========  ======================================================
key                            unit      meaning
=============================  ========  ======================================================
``cpu.percent``                %         system-wide CPU busy time, all cores (0-100)
``load.1m``                    count     1-minute load average (absent where the OS has none)
``load.5m``                    count     5-minute load average
``load.15m``                   count     15-minute load average
``memory.used_percent``        %         (total - available) / total
``memory.used_bytes``          bytes     total - available
``memory.available_bytes``     bytes     memory available without swapping
``proc.rss_bytes``             bytes     RSS of the process and all its descendants, summed
``proc.cpu_percent``           %         CPU of the process tree, top-style: 100 = one core
``proc.threads``               count     threads of the process tree
``disk.read_bytes_per_s``      B/s       read rate, all physical disks
``disk.write_bytes_per_s``     B/s       write rate, all physical disks
``net.sent_bytes_per_s``       B/s       send rate, all network interfaces but loopback
``net.recv_bytes_per_s``       B/s       receive rate, all network interfaces but loopback
``disk.free_bytes``            bytes     free to unprivileged users on ``disk_path``'s filesystem
``gpu.<i>.util_percent``       %         share of time a kernel ran on GPU ``i`` (NVML)
``gpu.<i>.memory_used_bytes``  bytes     GPU ``i`` memory in use
``gpu.<i>.memory_percent``     %         GPU ``i`` memory used / total
``gpu.<i>.temperature_c``      °C        GPU ``i`` core temperature
``gpu.<i>.power_w``            W         GPU ``i`` power draw
=============================  ========  ======================================================

Notes on the table:

- ``<i>`` is the NVML device index (PCI bus order, as ``nvidia-smi`` shows),
  not the CUDA index, and covers every GPU NVML can see, not only those in
  ``CUDA_VISIBLE_DEVICES``. A value a device does not support (power on some
  boards, utilisation on MIG) is absent without a report.
- Rates (``cpu.percent``, ``proc.cpu_percent``, ``*_per_s``) are differences
  between consecutive samples, so a sampler's first sample has none of them.
  A counter that went backwards (a device removed) gives no rate for that
  sample. Network rates sum per-interface differences of interfaces present in
  both samples, so an interface that comes or goes causes no spike.
- ``proc.*`` sums over the process and its descendants at each sample; shared
  pages count once per process that maps them. A descendant first seen in a
  sample contributes 0 to ``proc.cpu_percent`` in that sample (psutil needs
  two readings). Descendants that exit or deny access are skipped silently.
- Disk totals are psutil's: whole disks, not partitions (loop and zram devices
  included).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psutil

# Catching every exception, often to drop it, is this module's contract (training is never disturbed).
# ruff: noqa: BLE001, S110, S112

__all__ = ["GPU_KEYS", "KEYS", "Sampler", "SystemMonitor", "Window", "gpu_inventory"]

_RESCAN_EVERY = 5  # samples between scans for new child processes (10 s at the default interval)

KEYS: tuple[str, ...] = (
    "cpu.percent",
    "load.1m",
    "load.5m",
    "load.15m",
    "memory.used_percent",
    "memory.used_bytes",
    "memory.available_bytes",
    "proc.rss_bytes",
    "proc.cpu_percent",
    "proc.threads",
    "disk.read_bytes_per_s",
    "disk.write_bytes_per_s",
    "net.sent_bytes_per_s",
    "net.recv_bytes_per_s",
    "disk.free_bytes",
)
"""Machine-level metric keys (each also emitted with a ``.max`` suffix)."""

GPU_KEYS: tuple[str, ...] = ("util_percent", "memory_used_bytes", "memory_percent", "temperature_c", "power_w")
"""Per-device metric names; the key is ``gpu.<i>.<name>`` (each also with ``.max``)."""

MAX_SUFFIX = ".max"

# NVML return codes that mean "no GPU here" (absent, no report) or "this device cannot tell".
_NVML_ABSENT = (9, 12)  # NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND
_NVML_NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED
_LOOPBACK = ("lo", "lo0")  # Linux, macOS/BSD; Windows names it "Loopback Pseudo-Interface N"


class Window:
    """Mean and maximum per key over the samples added; pure arithmetic, no clock.

    Keys may come and go between samples: each key's mean is over the samples
    that had it. Values that are not finite numbers are ignored.
    """

    __slots__ = ("_count", "_max", "_sum", "samples")

    def __init__(self) -> None:
        self._sum: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self.samples = 0  # samples added, including ones without any usable value

    def add(self, sample: Mapping[str, float]) -> None:
        self.samples += 1
        for key, value in sample.items():
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(v):
                continue
            if key in self._count:
                self._sum[key] += v
                self._count[key] += 1
                self._max[key] = max(self._max[key], v)
            else:
                self._sum[key] = v
                self._count[key] = 1
                self._max[key] = v

    def result(self) -> dict[str, float]:
        """``{K: mean, K.max: max}`` for every key seen, in sorted key order; ``{}`` when empty."""
        row: dict[str, float] = {}
        for key in sorted(self._count):
            row[key] = self._sum[key] / self._count[key]
            row[key + MAX_SUFFIX] = self._max[key]
        return row

    def __len__(self) -> int:
        return self.samples


def _load_nvml() -> Any | None:
    """Import pynvml if installed; never raises (a broken install counts as absent)."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except Exception:
        return None
    return pynvml


def _nvml_code(e: BaseException) -> int | None:
    code = getattr(e, "value", None)
    return code if isinstance(code, int) else None


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def gpu_inventory() -> list[dict[str, Any]]:
    """One dict per NVML device: ``index``, ``name``, ``uuid``, ``memory_bytes`` (total), ``driver``.

    The fields are those of ``host.gpus`` in the environment record. ``[]``
    without pynvml, driver or GPU; a field that cannot be read is None. Never
    raises. Initialises and shuts down NVML around the query (NVML counts
    these, so a running monitor is not affected).
    """
    nvml = _load_nvml()
    if nvml is None:
        return []
    try:
        nvml.nvmlInit()
    except Exception:
        return []
    devices: list[dict[str, Any]] = []
    try:
        try:
            driver: str | None = _text(nvml.nvmlSystemGetDriverVersion())
        except Exception:
            driver = None
        for i in range(int(nvml.nvmlDeviceGetCount())):
            dev: dict[str, Any] = {"index": i, "name": None, "uuid": None, "memory_bytes": None, "driver": driver}
            devices.append(dev)
            try:
                h = nvml.nvmlDeviceGetHandleByIndex(i)
            except Exception:
                continue
            for field, read in (
                ("name", lambda h: _text(nvml.nvmlDeviceGetName(h))),
                ("uuid", lambda h: _text(nvml.nvmlDeviceGetUUID(h))),
                ("memory_bytes", lambda h: int(nvml.nvmlDeviceGetMemoryInfo(h).total)),
            ):
                try:
                    dev[field] = read(h)
                except Exception:
                    pass
    except Exception:
        pass
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
    return devices


class Sampler:
    """Takes one instantaneous reading of every metric: ``sample() -> {key: float}``.

    Keeps the state rates need (previous counters, primed psutil objects), so
    use one Sampler per series of samples. Not thread-safe; the monitor uses
    it from its own thread only. Each metric family is read under its own
    ``try``: a failure leaves that family's keys out and is reported once per
    family through ``on_error``. ``sample()`` never raises.
    """

    def __init__(
        self,
        disk_path: str | os.PathLike[str] = ".",
        pid: int | None = None,
        *,
        gpu: bool = True,
        on_error: Callable[[str], None] | None = None,
        rescan_every: int = _RESCAN_EVERY,
    ) -> None:
        self.disk_path = os.path.abspath(os.fspath(disk_path))  # a later chdir must not move it
        self.rescan_every = max(1, rescan_every)
        self._scan_in = 0
        self.pid = os.getpid() if pid is None else pid
        self.on_error = on_error
        self._gpu_wanted = gpu
        self._reported: set[str] = set()
        self._cpu_tid: int | None = None  # thread whose psutil.cpu_percent state is primed
        self._root: psutil.Process | None = None
        self._root_primed = False
        self._procs: dict[int, psutil.Process] = {}
        self._disk_prev: tuple[float, int, int] | None = None
        self._net_prev: tuple[float, dict[str, tuple[int, int]]] | None = None
        self._nvml: Any | None = None
        self._gpu_handles: list[Any] | None = None  # None: NVML not tried yet

    # -- public ---------------------------------------------------------------
    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        self._read("cpu", self._cpu, out)
        self._read("load", self._load, out)
        self._read("memory", self._memory, out)
        self._read("process", self._process, out)
        self._read("disk I/O", self._disk_io, out)
        self._read("network I/O", self._net_io, out)
        self._read("disk usage", self._disk_usage, out)
        if self._gpu_wanted:
            self._read("gpu", self._gpu, out)
        return out

    def close(self) -> None:
        """Release NVML if this sampler initialised it. Idempotent; never raises."""
        nvml, self._nvml = self._nvml, None
        self._gpu_handles = []
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception:
                pass

    # -- plumbing -------------------------------------------------------------
    def report(self, what: str, message: str) -> None:
        """Call ``on_error`` once per ``what``; an on_error that raises is ignored."""
        if what in self._reported:
            return
        self._reported.add(what)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                pass

    def _read(self, what: str, fn: Callable[[dict[str, float]], None], out: dict[str, float]) -> None:
        part: dict[str, float] = {}
        try:
            fn(part)
        except Exception as e:
            self.report(what, f"cannot read {what} ({type(e).__name__}: {e}); left out")
            return
        out.update(part)

    # -- metric families --------------------------------------------------------
    def _cpu(self, out: dict[str, float]) -> None:
        # psutil keeps the previous reading per calling thread: the first call
        # from a thread compares a reading with itself and means nothing.
        tid = threading.get_ident()
        value = psutil.cpu_percent(interval=None)
        if self._cpu_tid != tid:
            self._cpu_tid = tid
            return
        out["cpu.percent"] = float(value)

    def _load(self, out: dict[str, float]) -> None:
        if not hasattr(os, "getloadavg"):
            return  # Windows: psutil would emulate it with a thread of its own
        one, five, fifteen = psutil.getloadavg()
        out["load.1m"], out["load.5m"], out["load.15m"] = float(one), float(five), float(fifteen)

    def _memory(self, out: dict[str, float]) -> None:
        vm = psutil.virtual_memory()
        used = vm.total - vm.available
        out["memory.used_percent"] = 100.0 * used / vm.total if vm.total else 0.0
        out["memory.used_bytes"] = float(used)
        out["memory.available_bytes"] = float(vm.available)

    def _process(self, out: dict[str, float]) -> None:
        root = self._root
        if root is None or not root.is_running():
            root = self._root = psutil.Process(self.pid)
            self._root_primed = False
        procs: dict[int, psutil.Process] = {}
        rss = 0
        threads = 0
        cpu = 0.0
        # The root's errors propagate (the family is then absent and reported).
        with root.oneshot():
            rss += root.memory_info().rss
            threads += root.num_threads()
            cpu += root.cpu_percent(interval=None)
        # Finding descendants reads /proc/<pid>/stat of every process on the machine (most of a sample's
        # cost on a busy node): rescan every few samples, and follow the known children in between.
        self._scan_in -= 1
        if self._scan_in <= 0 or not self._procs:
            self._scan_in = self.rescan_every
            try:
                children = root.children(recursive=True)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                children = []
        else:
            children = list(self._procs.values())
        for child in children:
            known = self._procs.get(child.pid)
            p = known if known is not None and known == child else child  # same pid and start time
            try:
                with p.oneshot():
                    r = p.memory_info().rss
                    n = p.num_threads()
                    c = p.cpu_percent(interval=None)  # 0.0 on first sight
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # exited (or zombie) meanwhile, or not ours to read
            procs[p.pid] = p
            rss += r
            threads += n
            cpu += c
        self._procs = procs
        out["proc.rss_bytes"] = float(rss)
        out["proc.threads"] = float(threads)
        if self._root_primed:
            out["proc.cpu_percent"] = float(cpu)
        self._root_primed = True

    def _disk_io(self, out: dict[str, float]) -> None:
        io = psutil.disk_io_counters(perdisk=False)
        now = time.monotonic()
        if io is None:  # no disks visible (some containers)
            self._disk_prev = None
            return
        prev, self._disk_prev = self._disk_prev, (now, io.read_bytes, io.write_bytes)
        if prev is None or now <= prev[0]:
            return
        dt = now - prev[0]
        dr, dw = io.read_bytes - prev[1], io.write_bytes - prev[2]
        if dr >= 0 and dw >= 0:
            out["disk.read_bytes_per_s"] = dr / dt
            out["disk.write_bytes_per_s"] = dw / dt

    def _net_io(self, out: dict[str, float]) -> None:
        nics = psutil.net_io_counters(pernic=True)
        now = time.monotonic()
        cur = {name: (c.bytes_sent, c.bytes_recv) for name, c in nics.items()
               if name not in _LOOPBACK and not name.startswith("Loopback")}
        prev, self._net_prev = self._net_prev, (now, cur)
        if prev is None or now <= prev[0]:
            return
        dt = now - prev[0]
        sent = recv = 0
        for name, (s, r) in cur.items():
            before = prev[1].get(name)
            if before is None:
                continue
            ds, dr = s - before[0], r - before[1]
            if ds < 0 or dr < 0:
                continue  # interface reset its counters
            sent += ds
            recv += dr
        out["net.sent_bytes_per_s"] = sent / dt
        out["net.recv_bytes_per_s"] = recv / dt

    def _disk_usage(self, out: dict[str, float]) -> None:
        out["disk.free_bytes"] = float(psutil.disk_usage(self.disk_path).free)

    def _gpu(self, out: dict[str, float]) -> None:
        if self._gpu_handles is None:
            self._gpu_handles = []  # whatever happens below, try only once
            self._gpu_init()
        nvml = self._nvml
        if nvml is None:
            return
        temperature_gpu = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        readers: tuple[tuple[str, Callable[[Any], dict[str, float]]], ...] = (
            ("utilisation", lambda h: {"util_percent": float(nvml.nvmlDeviceGetUtilizationRates(h).gpu)}),
            ("memory", lambda h: _gpu_memory(nvml.nvmlDeviceGetMemoryInfo(h))),
            ("temperature", lambda h: {"temperature_c": float(nvml.nvmlDeviceGetTemperature(h, temperature_gpu))}),
            ("power", lambda h: {"power_w": nvml.nvmlDeviceGetPowerUsage(h) / 1000.0}),  # mW
        )
        for i, h in enumerate(self._gpu_handles):
            if h is None:
                continue
            for what, read in readers:
                try:
                    values = read(h)
                except Exception as e:
                    if _nvml_code(e) != _NVML_NOT_SUPPORTED:
                        self.report(f"gpu.{i}.{what}", f"cannot read GPU {i} {what} "
                                                       f"({type(e).__name__}: {e}); left out")
                    continue
                for name, v in values.items():
                    out[f"gpu.{i}.{name}"] = v

    def _gpu_init(self) -> None:
        nvml = _load_nvml()
        if nvml is None:
            return
        try:
            nvml.nvmlInit()
        except Exception as e:
            if _nvml_code(e) not in _NVML_ABSENT:
                self.report("gpu", f"NVML did not start ({type(e).__name__}: {e}); no GPU metrics")
            return
        self._nvml = nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as e:
            self.report("gpu", f"cannot count GPUs ({type(e).__name__}: {e}); no GPU metrics")
            self.close()
            return
        handles: list[Any] = []
        for i in range(count):
            try:
                handles.append(nvml.nvmlDeviceGetHandleByIndex(i))
            except Exception as e:
                handles.append(None)
                self.report(f"gpu.{i}", f"cannot open GPU {i} ({type(e).__name__}: {e}); left out")
        self._gpu_handles = handles
        if not count:
            self.close()


def _gpu_memory(mem: Any) -> dict[str, float]:
    used, total = float(mem.used), float(mem.total)
    row = {"memory_used_bytes": used}
    if total > 0:
        row["memory_percent"] = 100.0 * used / total
    return row


class SystemMonitor:
    """Samples every ``interval`` s on a daemon thread; calls ``emit(t, row)`` once per ``window`` s.

    No thread exists before :meth:`start`. :meth:`stop` wakes the thread at
    once, which takes a last sample (if at least half an interval passed since
    the previous one) and emits the partial window if it holds a sample.
    ``emit`` and ``on_error`` run on the monitor thread; an exception from
    either is caught (``emit``'s is reported once). A monitor runs once:
    ``start()`` after ``stop()`` does nothing.
    """

    THREAD_NAME = "runsync-system"

    def __init__(
        self,
        emit: Callable[[float, dict[str, float]], None],
        *,
        interval: float = 2.0,
        window: float = 30.0,
        disk_path: str | os.PathLike[str] = ".",
        pid: int | None = None,
        on_error: Callable[[str], None] | None = None,
        gpu: bool = True,
    ) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        self.emit = emit
        self.interval = float(interval)
        self.window = float(window)
        self.sampler = Sampler(disk_path, pid, gpu=gpu, on_error=on_error)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # start/stop
        self._emit_lock = threading.Lock()  # held while emit runs; stop() takes it to close emission
        self._closed = False  # set by stop(): emit is never started again

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._main, name=self.THREAD_NAME, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and wait up to ``timeout`` s for the last emit. Idempotent; safe before start().

        Once stop() has returned, emit is not called again (unless an emit was
        still running when the timeout expired).
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():  # stuck (a slow NVML call?): it must not emit after we return
            got = self._emit_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0))
            self._closed = True
            if got:
                self._emit_lock.release()

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    # -- thread -------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._loop()
        except Exception as e:  # a bug here must not surface in training
            self.sampler.report("monitor", f"stopped ({type(e).__name__}: {e})")
        finally:
            self.sampler.close()

    def _loop(self) -> None:
        interval, span = self.interval, self.window
        eps = min(interval, span) * 1e-3
        t0 = time.monotonic()
        end = t0 + span  # scheduled end of the current window
        win = Window()
        last_wall, last_mono = self._take(win)
        n = 0
        while True:
            n += 1
            due = t0 + n * interval
            now = time.monotonic()
            if due < now:  # fell behind (suspend, overload): skip missed ticks, rates still use real time
                n = int((now - t0) / interval) + 1
                due = t0 + n * interval
            if self._stop.wait(due - now):
                break
            last_wall, last_mono = self._take(win)
            if due >= end - eps:
                self._emit(last_wall, win)
                win = Window()
                end += span * (math.floor((due + eps - end) / span) + 1)  # next end after due
        if time.monotonic() - last_mono >= interval / 2:
            last_wall, last_mono = self._take(win)
        if len(win):
            self._emit(last_wall, win)

    def _take(self, win: Window) -> tuple[float, float]:
        win.add(self.sampler.sample())
        return time.time(), time.monotonic()

    def _emit(self, t: float, win: Window) -> None:
        row = win.result()
        with self._emit_lock:
            if self._closed:
                return
            try:
                self.emit(t, row)
            except Exception as e:
                self.sampler.report("emit", f"could not store a row ({type(e).__name__}: {e})")

"""The CPU budget: what each process spends per unit of work (measured from /proc), and as a
picture against what a target rate allows on this machine's cores.

Both load benchmarks (collector, portal) measure the CPU every process on the machine spends per
event or per sign-in. Two fully busy cores give ``cores / rate`` of CPU per unit at a given
rate; the picture sets the measured cost, stacked by process, against that allowance for the
target and for the rate reached, so whether a target fits on the machine is seen at a glance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from census.settings import Settings


def _proc_stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state is [0], ppid [1])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_of(fields: list[str]) -> float:
    """User plus system CPU seconds from a stat line's fields."""
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far."""
    return _cpu_of(_proc_stat(pid))


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and all its living descendants (gunicorn's workers, the
    PostgreSQL backends)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _proc_stat(entry.name)
        except OSError:
            continue  # exited meanwhile
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = _cpu_of(fields)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def server_pids(settings: Settings, include_postgres: bool = False) -> dict[str, int]:
    """PIDs of the local servers (mosquitto, redis, influxdb, postgres) that run, by name."""
    from wifi_census import local_servers as local_services

    pids = {}
    for service in local_services.build_services(settings, include_postgres=include_postgres):
        pid = service.read_pid()
        if pid is not None:
            pids[service.name] = pid
    return pids


def draw_cpu_budget(path: Path, title: str, unit: str, per_unit: dict[str, float],
                    reached_rate: float, target_rate: float, rate_unit: str,
                    target_name: str = "the target") -> Path:
    """Save a PNG: per-unit CPU stacked by process, beside the allowance for target and reached.

    per_unit holds each process's CPU per unit in the given display unit (e.g. µs per event);
    rates are per second; the allowance is cores / rate in the same display unit.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    scale = {"µs": 1e6, "ms": 1e3}[unit]
    cores = os.cpu_count() or 1
    target_budget = cores / target_rate * scale
    reached_budget = cores / reached_rate * scale if reached_rate else 0.0
    figure, axes = plt.subplots(figsize=(9, 3.2), dpi=110)
    left = 0.0
    colours = plt.get_cmap("tab10")
    for index, (name, value) in enumerate(sorted(per_unit.items(), key=lambda kv: -kv[1])):
        axes.barh([0], [value], left=left, height=0.8, color=colours(index), edgecolor="white",
                  label=f"{name} {value:.2f} {unit}")
        left += value
    axes.axvline(target_budget, color="black", linestyle="--", linewidth=1.5)
    axes.text(target_budget, 0.75, f" allowed at {target_name}, {target_rate:,.0f} {rate_unit}: "
              f"{target_budget:.1f} {unit}", va="center", fontsize=8)
    if reached_budget:
        axes.axvline(reached_budget, color="grey", linestyle=":", linewidth=1.5)
        axes.text(reached_budget, -0.75, f" allowed at the rate reached, {reached_rate:,.0f} "
                  f"{rate_unit}: {reached_budget:.1f} {unit}", va="center", fontsize=8,
                  color="dimgrey")
    axes.set_xlim(0, max(left, target_budget, reached_budget) * 1.6)
    axes.set_ylim(-1.0, 1.0)
    axes.set_yticks([])
    axes.set_xlabel(f"CPU per {'event' if unit == 'µs' else 'sign-in'}, all processes, {unit} "
                    f"({cores} cores)")
    axes.set_title(f"{title}: measured {left:.1f} {unit}", fontsize=10)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=3, fontsize=8,
                frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path

#!/usr/bin/env python3
"""Where the time of a kill -9 failover goes, from the node logs of a
failover-experiment run (`--keep`, or DIR/logs-<run>/): for each trial, the
milliseconds from the testkit's SIGKILL (its wall-clock mark in the killed
node's log) to the first survivor's EOF, the first and last crash hint, and
the new leader's election, as percentiles. Timestamps are the nodes' own
(microseconds, one host clock).

    scripts/kill_timeline.py results/v2/logs-failover-sraft-kill
"""

import datetime
import pathlib
import re
import sys

KILL = re.compile(r"killed \(SIGKILL\) at unix ([\d.]+), reaped ([\d.]+) ms")
STAMP = re.compile(r"^\[(\S+)Z ")


def events(log_dir):
    out = []
    for path in sorted(pathlib.Path(log_dir).glob("node-*.log")):
        for line in path.open(errors="replace"):
            m = KILL.search(line)
            if m:
                out.append((float(m.group(1)) * 1000, "kill", float(m.group(2))))
                continue
            m = STAMP.match(line)
            if not m:
                continue
            t = datetime.datetime.fromisoformat(m.group(1)).replace(
                tzinfo=datetime.timezone.utc).timestamp() * 1000
            if "closed by the peer" in line:
                out.append((t, "eof", None))
            elif "[CRASH HINT]" in line:
                out.append((t, "hint", None))
            elif "[ELECTION SUCCESS]" in line:
                out.append((t, "win", None))
    out.sort(key=lambda e: e[0])
    return out


def trials(evs):
    result, cur = [], None
    for t, kind, extra in evs:
        if kind == "kill":
            cur = {"reaped": extra, "at": t}
            result.append(cur)
        elif cur is not None and "win" not in cur:
            since = t - cur["at"]
            if kind == "eof":
                cur.setdefault("first EOF", since)
            elif kind == "hint":
                cur.setdefault("first hint", since)
                cur["last hint"] = since
            elif kind == "win":
                cur["win"] = since
    return result


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ts = trials(events(sys.argv[1]))
    if not ts:
        sys.exit(f"kill_timeline: no SIGKILL mark in {sys.argv[1]}/node-*.log")
    print(f"{len(ts)} kills; ms after the signal")
    print("| step | n | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|")
    for key in ["reaped", "first EOF", "first hint", "last hint", "win"]:
        vs = [t[key] for t in ts if key in t]
        if vs:
            print(f"| {key} | {len(vs)} | {pct(vs, 50):.2f} | {pct(vs, 90):.2f} "
                  f"| {pct(vs, 99):.2f} | {max(vs):.2f} |")


if __name__ == "__main__":
    main()

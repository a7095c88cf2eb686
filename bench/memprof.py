"""Memory over time of one `strata run`, set against its tasks.

usage: python3 bench/memprof.py PROJECT -- STRATA_BIN run --project PROJECT [ARGS...]

Samples the process RSS every 50 ms, then reads the run's tasks from
PROJECT/.strata/state.db (SQLite state store only) and prints the peak, the
tasks running at that moment, and for every task its start, end, duration and
the highest RSS seen while it ran.
"""
import datetime
import sqlite3
import subprocess
import sys
import time

if len(sys.argv) < 4 or sys.argv[2] != "--":
    sys.exit(__doc__)
proj, cmd = sys.argv[1], sys.argv[3:]
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
samples = []  # (unix seconds, RSS in MB)
while p.poll() is None:
    try:
        with open(f"/proc/{p.pid}/status") as f:
            rss = next((int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS")), None)
        if rss is not None:
            samples.append((time.time(), rss))
    except FileNotFoundError:
        pass
    time.sleep(0.05)
print("rc", p.returncode, "samples", len(samples))
if not samples:
    sys.exit(p.returncode or 1)


def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else None


db = sqlite3.connect(f"{proj}/.strata/state.db")
run = db.execute("select run_id from runs order by started_at desc limit 1").fetchone()[0]
rows = db.execute("select task, started_at, ended_at from tasks where run_id=?", (run,)).fetchall()
# Tasks that never started (skipped downstream of a failure) are left out.
tasks = sorted(((t, ts(a), ts(b) or samples[-1][0]) for t, a, b in rows if a), key=lambda x: x[1])
t0 = samples[0][0]
pk = max(samples, key=lambda s: s[1])
print(f"peak {pk[1]} MB at +{pk[0]-t0:.1f}s; running then:", [t for t, a, b in tasks if a <= pk[0] <= b])
for t, a, b in tasks:
    m = max((rss for at, rss in samples if a <= at <= b), default=0)
    print(f"{t:32s} +{a-t0:6.2f} .. +{b-t0:6.2f}  {b-a:6.2f}s  maxrss_during={m}")
sys.exit(p.returncode)

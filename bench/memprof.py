"""Memory over time of one `strata run`, set against its tasks.

usage: python3 bench/memprof.py PROJECT -- STRATA_BIN run --project PROJECT [ARGS...]

Samples the process RSS every 50 ms, then reads the run's tasks from
PROJECT/.strata/state.db (SQLite state store only) and prints the peak, the
tasks running at that moment, and for every task its start, end, duration and
the highest RSS seen while it ran.
"""
import subprocess, sys, time, sqlite3, datetime
proj = sys.argv[1]; cmd = sys.argv[3:]
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
samples = []
while p.poll() is None:
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    samples.append((time.time(), int(line.split()[1]) // 1024))
    except FileNotFoundError:
        pass
    time.sleep(0.05)
print("rc", p.returncode, "samples", len(samples))
db = sqlite3.connect(f"{proj}/.strata/state.db")
run = db.execute("select run_id from runs order by started_at desc limit 1").fetchone()[0]
rows = db.execute("select task, started_at, ended_at from tasks where run_id=?", (run,)).fetchall()
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else None
tasks = [(t, ts(a), ts(b)) for t, a, b in rows]
t0 = samples[0][0]
# print peak per task: max RSS while running, and which others overlapped at the global peak
pk = max(samples, key=lambda s: s[1])
print(f"peak {pk[1]} MB at +{pk[0]-t0:.1f}s; running then:", [t for t, a, b in tasks if a and b and a <= pk[0] <= b])
for t, a, b in sorted(tasks, key=lambda x: x[1] or 0):
    if a is None: continue
    m = max([s[1] for s in samples if a <= s[0] <= (b or 1e20)] or [0])
    print(f"{t:32s} +{a-t0:6.2f} .. +{(b or 0)-t0:6.2f}  {(b or 0)-a:6.2f}s  maxrss_during={m}")

#!/usr/bin/env bash
# Before/after benchmark of two checkouts of this project, through the CLI only.
#
#   A=/path/to/before B=/path/to/after bench/ab_redesign.sh      (defaults: A=../base, B=this checkout)
#   QUICK=1 A=... B=... bench/ab_redesign.sh                      (tiny sizes, ~2 min: a dry run)
#
# Each side runs as `python -m nmt ...` with PYTHONPATH=<checkout> from an empty, neutral working
# directory (the cwd comes first on sys.path, so running inside a checkout would shadow it).
# Run order is A, B, A, B, ... (PAIRS pairs) so that host drift hits both sides alike; nothing
# else should run on the machine meanwhile. Printed: every run's raw figure, then a table of
# after/before (B/A) ratios.
#
#  1. training throughput: the config of `bench/run.sh throughput` (Transformer 3+3, d_model 256,
#     4 heads, d_ff 1024, 4096-token batches, SECS seconds, no validation); per run the mean of the
#     logged target tokens/s after the first fifth of the intervals; pooled ratio = sum B / sum A.
#  2. `nmt translate -c X --beam {1,5} -q -o OUT INPUT`, X = a checkpoint (torch) and its
#     `nmt export` dir (CTranslate2): sentences/s = input lines / wall time of the whole command
#     (start-up and model load included); pooled ratio = sum of A's walls / sum of B's walls.
#     Both sides translate the same input with the same checkpoint and export (made once by A).
#  3. start-up: `nmt --help` and one sentence from stdin (`echo "ein Mann" | nmt translate -c X`,
#     torch checkpoint and export): N_START runs each side, alternating; ratio of the medians.
#
# Setup (by side A, cached in WORK unless FRESH=1): Multi30k de-en preprocessed as
# `bench/run.sh preprocess` does (joint 8k unigram), a checkpoint of the recipe config
# `recipes/multi30k-de-en/transformer.yaml` trained CKPT_MIN minutes (or give CKPT=path.pt), and
# its float32 export. Translate inputs: Multi30k test2016 + val German (2014 lines) for greedy,
# test2016 (1000 lines) for beam 5.
#
# Env: A, B (checkouts), PY (python with torch + ctranslate2; default B/.venv, then A/.venv),
#      DATA (Multi30k raw dir, default ../shared/data/multi30k beside B, else /work/shared/...),
#      WORK (scratch dir, default /tmp/nmt-ab-redesign[-quick]), FRESH=1 (redo the setup),
#      PAIRS (default 3), SECS (training seconds per run, default 80), LOG_EVERY (default 5),
#      CKPT_MIN (default 3), CKPT (use this checkpoint instead of training one),
#      LINES_B1 / LINES_B5 (translate input lines, default 2014 / 1000), BATCH_TOKENS (passed to
#      translate as --batch-tokens when set), N_START (start-up runs per side, default 10),
#      SENTENCE (default "ein Mann"), SKIP (comma list of sections to skip: train,translate,startup),
#      IDLE_WAIT (before each pair, wait up to this many seconds for other processes to use < 0.15
#      cores; default 300, 0: don't wait), MAX_REDO (default 3: see Noise), ORDER (ab: every pair
#      runs A then B, the default; abba: odd pairs run B then A, cancelling a first-run bias).
# Noise: each run also records the CPU that OTHER processes used meanwhile (/proc/stat busy time
# minus the run's own rusage). A pair in which either run saw more than 0.15 cores of that is
# printed, discarded and redone (up to MAX_REDO times; then kept, marked *); the table shows the
# worst figure among the kept runs. On a machine other jobs keep busy the run takes longer.
# Full size: ~16-17 minutes on the idle 2-core VM (setup ~3.5 min when not cached, throughput ~9 min,
# translate ~3.5 min, start-up ~1 min); QUICK=1 ~2.5 min with a fresh WORK.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
A=$(cd "${A:-$HERE/../base}" && pwd)
B=$(cd "${B:-$HERE}" && pwd)
QUICK=${QUICK:-0}
if [ -z "${PY:-}" ]; then
  for p in "$B/.venv/bin/python" "$A/.venv/bin/python" "$HERE/.venv/bin/python"; do
    [ -x "$p" ] && { PY=$p; break; }
  done
fi
PY=${PY:?set PY to a python with torch and ctranslate2}
if [ -z "${DATA:-}" ]; then
  for d in "$B/../shared/data/multi30k" "$A/../shared/data/multi30k" /work/shared/data/multi30k; do
    [ -f "$d/train.de.gz" ] && { DATA=$(cd "$d" && pwd); break; }
  done
fi
DATA=${DATA:?set DATA to the Multi30k raw dir}
if [ "$QUICK" = 1 ]; then
  : "${WORK:=/tmp/nmt-ab-redesign-quick}" "${PAIRS:=2}" "${SECS:=5}" "${LOG_EVERY:=1}"
  : "${CKPT_MIN:=0.2}" "${LINES_B1:=60}" "${LINES_B5:=30}" "${N_START:=3}"
else
  : "${WORK:=/tmp/nmt-ab-redesign}" "${PAIRS:=3}" "${SECS:=80}" "${LOG_EVERY:=5}"
  : "${CKPT_MIN:=3}" "${LINES_B1:=2014}" "${LINES_B5:=1000}" "${N_START:=10}"
fi
export A B PY DATA WORK PAIRS SECS LOG_EVERY CKPT_MIN LINES_B1 LINES_B5 N_START QUICK
export CKPT=${CKPT:-} BATCH_TOKENS=${BATCH_TOKENS:-} SENTENCE=${SENTENCE:-ein Mann}
export SKIP=${SKIP:-} FRESH=${FRESH:-0} IDLE_WAIT=${IDLE_WAIT:-300} MAX_REDO=${MAX_REDO:-3} ORDER=${ORDER:-ab}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
unset PYTHONPATH
mkdir -p "$WORK/cwd" "$WORK/logs"
cd "$WORK/cwd"  # neutral: no nmt/ here
exec "$PY" - <<'PY'
import gzip, os, re, shutil, statistics, subprocess, sys, threading, time
from dataclasses import dataclass
from pathlib import Path

E = os.environ
A, B, PY, WORK = Path(E["A"]), Path(E["B"]), E["PY"], Path(E["WORK"])
DATA = Path(E["DATA"])
PAIRS, SECS, LOG_EVERY = int(E["PAIRS"]), float(E["SECS"]), int(E["LOG_EVERY"])
N_START, IDLE_WAIT, MAX_REDO = int(E["N_START"]), float(E["IDLE_WAIT"]), int(E["MAX_REDO"])
ORDER = E["ORDER"]
SKIP = set(filter(None, E["SKIP"].split(",")))
CWD, LOGS = WORK / "cwd", WORK / "logs"
SIDES = {"A": A, "B": B}
HZ = os.sysconf("SC_CLK_TCK")
NOISY = 0.15  # cores used by other processes during a run above which it is flagged
T_START = time.time()


def say(*a):
    print(*a, flush=True)


def med(x):
    return statistics.median(x)


def cpu_busy():
    """Seconds of CPU the whole machine has spent busy (all cores; steal counts as busy)."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, open("/proc/stat").readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / HZ


@dataclass
class Run:
    wall: float  # s, whole process
    rss: float  # MB, peak
    rc: int
    others: float  # cores used by other processes meanwhile (/proc/stat busy minus this run's CPU)

    @property
    def noisy(self):  # 0.03 s of slack: /proc/stat counts in 10 ms ticks
        return self.others * self.wall > NOISY * self.wall + 0.03

    @property
    def mark(self):
        return "*" if self.noisy else ""


def run(side, args, *, stdin_text=None, log=None, timeout=900) -> Run:
    """`python -m nmt ARGS` with side's checkout on PYTHONPATH, from the neutral cwd."""
    env = dict(os.environ, PYTHONPATH=str(SIDES[side]))
    out = open(log, "ab") if log else subprocess.DEVNULL
    b0 = cpu_busy()
    t0 = time.perf_counter()
    p = subprocess.Popen([PY, "-m", "nmt", *map(str, args)], cwd=CWD, env=env,
                         stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                         stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    if stdin_text is not None:
        p.stdin.write(stdin_text.encode())
        p.stdin.close()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    others = max(0.0, cpu_busy() - b0 - ru.ru_utime - ru.ru_stime) / wall
    timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    if log:
        out.close()
    if log and p.returncode != 0:
        say(f"FAILED ({side}, exit {p.returncode}): nmt {' '.join(map(str, args))}\n--- tail of {log}:")
        say("".join(open(log, errors="replace").readlines()[-15:]))
        sys.exit(1)
    return Run(wall, ru.ru_maxrss / 1024, p.returncode, others)


def wait_idle(what):
    """Wait (up to IDLE_WAIT s) until other processes use < NOISY cores over 1 s."""
    t0 = time.time()
    while True:
        b0 = cpu_busy()
        time.sleep(1)
        busy = cpu_busy() - b0
        if busy < NOISY:
            break
        if time.time() - t0 > IDLE_WAIT:
            say(f"  (machine still busy before {what}: others use {busy:.2f} cores; going on)")
            return
    if time.time() - t0 > 3:
        say(f"  (waited {time.time() - t0:.0f} s for the machine to go idle before {what})")


REDONE = {}


def pair(label, do, gate=True, idx=0):
    """One A run then one B run (B then A on odd idx with ORDER=abba); redone (up to MAX_REDO times) when other processes disturbed
    either. do(side) -> (Run, anything). Returns {side: (Run, anything)}."""
    for attempt in range(MAX_REDO + 1):
        if gate or attempt:
            wait_idle(label)
        order = ("B", "A") if ORDER == "abba" and idx % 2 else ("A", "B")
        res = {s: do(s) for s in order}
        if not any(r.noisy for r, _ in res.values()) or attempt == MAX_REDO:
            return res
        REDONE[label.split(" pair")[0]] = REDONE.get(label.split(" pair")[0], 0) + 1
        say(f"  ({label}: disturbed, redone; discarded A {res['A'][0].wall:.3f}{res['A'][0].mark} s "
            f"B {res['B'][0].wall:.3f}{res['B'][0].mark} s, others {res['A'][0].others:.2f} / "
            f"{res['B'][0].others:.2f} cores)")


def noise_note(runs, label):
    n = sum(r.noisy for r in runs)
    return (f"others used up to {max(r.others for r in runs):.2f} cores"
            + (f"; {n} of {len(runs)} kept runs flagged *" if n else "")
            + (f"; {REDONE[label]} pairs redone" if REDONE.get(label) else ""))


def rev(path):
    try:
        h = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return h + ("+uncommitted" if dirty else "") if h else "no git"
    except OSError:
        return "no git"


# --- which code each side runs --------------------------------------------------------------
say(f"== nmt A/B benchmark {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    + ("  [QUICK dry run]" if E["QUICK"] == "1" else ""))
for s, path in SIDES.items():
    env = dict(os.environ, PYTHONPATH=str(path))
    got = subprocess.run([PY, "-c", "import nmt; print(nmt.__file__)"], cwd=CWD, env=env,
                         capture_output=True, text=True).stdout.strip()
    if not got.startswith(str(path) + "/"):
        say(f"side {s}: `import nmt` resolves to {got!r}, not under {path}: aborting")
        sys.exit(1)
    say(f"side {s}: {path} ({rev(path)}) -> {got}")
say(f"python {PY}; cwd {CWD}; cores {os.cpu_count()}; pairs {PAIRS}, order {ORDER}; load avg {os.getloadavg()[0]:.2f}")
if A == B:
    say("A and B are the same checkout: every ratio should be ~1.0 (a noise check)")

# --- setup, by side A ------------------------------------------------------------------------
t_setup = time.time()
if E["FRESH"] == "1":
    for d in ("data", "ckpt", "ct2", "inputs"):
        shutil.rmtree(WORK / d, ignore_errors=True)
data_bin = WORK / "data"
if not (data_bin / "meta.json").exists():
    shutil.rmtree(data_bin, ignore_errors=True)
    r = run("A", ["preprocess", "--src", "de", "--tgt", "en", "--train-prefix", DATA / "train",
                  "--valid-prefix", DATA / "val", "--test-prefix", DATA / "test_2016_flickr",
                  "--vocab-size", 8000, "--out", data_bin], log=LOGS / "setup-preprocess.log")
    say(f"setup: preprocessed Multi30k de-en (joint 8k) with A in {r.wall:.1f} s -> {data_bin}")
else:
    say(f"setup: reusing {data_bin}")
if E["CKPT"]:
    ckpt = Path(E["CKPT"]).resolve()
    say(f"setup: checkpoint given: {ckpt}")
else:
    ckpt = WORK / "ckpt" / "best.pt"
    if not ckpt.exists():
        shutil.rmtree(WORK / "ckpt", ignore_errors=True)
        recipe = A / "recipes/multi30k-de-en/transformer.yaml"
        cfg = [recipe] if recipe.exists() else [
            "model.backend=transformer", "model.d_model=256", "model.encoder_layers=3",
            "model.decoder_layers=3", "model.n_heads=4", "model.d_ff=1024", "model.dropout=0.1",
            "train.max_tokens=2500", "train.lr=1.5e-3", "train.label_smoothing=0.1"]
        wait_idle("training the checkpoint")
        # a short run: shorter warm-up than the recipe's 400 steps; validation only at the end
        r = run("A", ["train", *cfg, "-o", WORK / "ckpt", "-q", f"data.dir={data_bin}",
                      f"train.max_time={E['CKPT_MIN']}", "train.warmup=150",
                      "train.valid_every=100000", "train.log_every=50"],
                log=LOGS / "setup-train.log", timeout=3600)
        last = [l for l in open(LOGS / "setup-train.log") if l.startswith("validation")][-1:]
        say(f"setup: trained {ckpt} with A ({E['CKPT_MIN']} min budget, {r.wall:.0f} s wall, others "
            f"{r.others:.2f} cores); {''.join(last).strip()}")
    else:
        say(f"setup: reusing {ckpt}")
ct2 = WORK / "ct2"
if not (ct2 / "model.bin").exists():
    r = run("A", ["export", ckpt, "-o", ct2, "--force"], log=LOGS / "setup-export.log")
    say(f"setup: exported it (float32) with A in {r.wall:.1f} s -> {ct2}")
else:
    say(f"setup: reusing {ct2}")
(WORK / "inputs").mkdir(exist_ok=True)
lines = [l for f in ("test_2016_flickr.de.gz", "val.de.gz")
         for l in gzip.open(DATA / f, "rt", encoding="utf-8").read().splitlines()]
INPUT = {}
for beam, n in ((1, int(E["LINES_B1"])), (5, int(E["LINES_B5"]))):
    INPUT[beam] = WORK / "inputs" / f"b{beam}-{n}.de"
    INPUT[beam].write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
say(f"setup: {time.time() - t_setup:.0f} s; translate inputs: greedy {INPUT[1]}, beam 5 {INPUT[5]} "
    "(Multi30k test2016 then val, German)")

# warm-up, untimed: each side once through --help, the torch and the export path (pyc, page cache)
for s in SIDES:
    run(s, ["--help"])
    for m in (ckpt, ct2):
        run(s, ["translate", "-c", m, "-q"], stdin_text=E["SENTENCE"] + "\n")

ROWS = {"train": [], "translate": [], "startup": []}  # (label, A, B, B/A, kept runs, reading)
say(f"\n* = other processes used more than {NOISY} cores during that run; a pair with one is redone "
    f"(up to {MAX_REDO} times), then kept with its mark")

# --- 3. start-up (first: cheap, and its medians let section 2 subtract start-up) ----------------
startup_med = {}
if "startup" not in SKIP:
    say(f"\n== start-up: {N_START} pairs A, B (wall s, whole process)")
    cases = [("nmt --help", ["--help"], None),
             ("1 sentence, torch ckpt", ["translate", "-c", ckpt, "-q"], E["SENTENCE"] + "\n"),
             ("1 sentence, ct2 export", ["translate", "-c", ct2, "-q"], E["SENTENCE"] + "\n")]
    for label, args, stdin_text in cases:
        runs = {"A": [], "B": []}
        for i in range(N_START):
            res = pair(f"{label} pair {i + 1}", lambda s: (run(s, args, stdin_text=stdin_text, timeout=120), None),
                       gate=i == 0, idx=i)
            for s in res:
                runs[s].append(res[s][0])
        t = {s: [r.wall for r in runs[s]] for s in runs}
        for s in ("A", "B"):
            say(f"  {label:24s} {s}: " + " ".join(f"{r.wall:.3f}{r.mark}" for r in runs[s])
                + f"  | median {med(t[s]):.3f} s, peak RSS {max(r.rss for r in runs[s]):.0f} MB")
            if any(r.rc for r in runs[s]):
                say(f"  WARNING: {sum(r.rc != 0 for r in runs[s])} runs of {s} exited non-zero")
        ratio = med(t["B"]) / med(t["A"])
        pr = [b / a for a, b in zip(t["A"], t["B"])]
        allr = runs["A"] + runs["B"]
        say(f"  {label:24s} B/A of medians {ratio:.3f} (pair by pair: median {med(pr):.3f}, min {min(pr):.3f}, "
            f"max {max(pr):.3f}); {noise_note(allr, label)}")
        startup_med[label] = {s: med(t[s]) for s in t}
        ROWS["startup"].append((f"start-up: {label} (median s)", f"{med(t['A']):.3f}", f"{med(t['B']):.3f}",
                                ratio, allr, "time: <1 = B faster"))

# --- 2. translate ------------------------------------------------------------------------------
if "translate" not in SKIP:
    say(f"\n== translate: {PAIRS} pairs A, B per case; sent/s = lines / wall (whole command: start-up, "
        "model load, decoding, writing)")
    extra = ["--batch-tokens", E["BATCH_TOKENS"]] if E["BATCH_TOKENS"] else []
    for rt, model, s1 in (("torch", ckpt, "1 sentence, torch ckpt"), ("ct2", ct2, "1 sentence, ct2 export")):
        for beam in (1, 5):
            src = INPUT[beam]
            n = sum(1 for _ in open(src, encoding="utf-8"))
            label = f"translate {rt} {'greedy' if beam == 1 else 'beam 5'}"

            def do(s):
                o = WORK / f"out-{rt}-b{beam}-{s}.txt"
                r = run(s, ["translate", "-c", model, "--beam", beam, *extra, "-q", "-o", o, src],
                        log=LOGS / f"translate-{rt}-b{beam}-{s}.log", timeout=600)
                return r, o.read_text(encoding="utf-8")

            runs, outs = {"A": [], "B": []}, {}
            for i in range(PAIRS):
                res = pair(f"{label} pair {i + 1}", do, idx=i)
                for s in res:
                    runs[s].append(res[s][0])
                    outs[s] = res[s][1]
            walls = {s: [r.wall for r in runs[s]] for s in runs}
            for s in ("A", "B"):
                say(f"  {label:24s} {s}: walls " + " ".join(f"{r.wall:.2f}{r.mark}" for r in runs[s])
                    + " s -> sent/s " + " ".join(f"{n / x:.1f}" for x in walls[s])
                    + f" | pooled {n * PAIRS / sum(walls[s]):.1f}, peak RSS {max(r.rss for r in runs[s]):.0f} MB")
            pr = [a / b for a, b in zip(walls["A"], walls["B"])]
            ratio = sum(walls["A"]) / sum(walls["B"])
            same = outs["A"] == outs["B"]
            nl = {s: outs[s].count("\n") for s in outs}
            allr = runs["A"] + runs["B"]
            say(f"  {label:24s} B/A pooled {ratio:.3f} (pairs " + " ".join(f"{x:.3f}" for x in pr)
                + f"); {n} lines in, out A {nl['A']} B {nl['B']}; outputs {'identical' if same else 'DIFFER'}; "
                + noise_note(allr, label))
            ROWS["translate"].append((f"{label} (sent/s, {n} lines)", f"{n * PAIRS / sum(walls['A']):.1f}",
                                      f"{n * PAIRS / sum(walls['B']):.1f}", ratio, allr,
                                      "rate: >1 = B faster" + ("" if same else "; outputs DIFFER")))
            if s1 in startup_med:  # approximate decoding-only rate: wall minus the 1-sentence median
                dec = {s: sum(w - startup_med[s1][s] for w in walls[s]) for s in walls}
                if min(dec.values()) > 0.2 * PAIRS:
                    r2 = dec["A"] / dec["B"]
                    say(f"  {label:24s} minus the 1-sentence start-up median: sent/s A {n * PAIRS / dec['A']:.1f} "
                        f"B {n * PAIRS / dec['B']:.1f}, B/A {r2:.3f} (approximate)")
                    ROWS["translate"].append(("  same, minus 1-sentence start-up (approx)",
                                              f"{n * PAIRS / dec['A']:.1f}", f"{n * PAIRS / dec['B']:.1f}",
                                              r2, allr, "rate: >1 = B faster"))

# --- 1. training throughput ----------------------------------------------------------------------
if "train" not in SKIP:
    label = "training"
    say(f"\n== training throughput: the bench/run.sh throughput config, {SECS:g} s per run, {PAIRS} pairs A, B")
    thr_args = [f"data.dir={data_bin}", "model.backend=transformer", "model.d_model=256",
                "model.encoder_layers=3", "model.decoder_layers=3", "model.n_heads=4",
                "model.d_ff=1024", "model.dropout=0.1", "model.attention_dropout=0.1",
                "train.max_tokens=4096", "train.lr=1e-3", "train.warmup=4000",
                f"train.max_time={SECS / 60:.6f}", "train.valid_every=1000000",
                "train.valid_bleu=false", "train.best_metric=loss", f"train.log_every={LOG_EVERY}"]
    runs, tps = {"A": [], "B": []}, {"A": [], "B": []}

    def do(s):
        rd = WORK / "thr_run"
        shutil.rmtree(rd, ignore_errors=True)
        log = LOGS / f"train-{s}.log"
        log.unlink(missing_ok=True)
        r = run(s, ["train", "-o", rd, "-q", *thr_args], log=log, timeout=SECS * 3 + 600)
        text = (rd / "train.log").read_text() if (rd / "train.log").exists() else log.read_text()
        rows = [float(x.replace(",", "")) for x in re.findall(r"([\d,]+(?:\.\d+)?) tgt tok/s", text)]
        use = rows[max(1, len(rows) // 5):] or rows  # as bench/run.sh; all of them if that leaves none
        if not use:
            say(f"  {s}: no 'tgt tok/s' lines in {log}")
            sys.exit(1)
        tp = sum(use) / len(use)
        say(f"  {s}: tgt tok/s {tp:.0f}{r.mark} (intervals logged {len(rows)}, used {len(use)}, min "
            f"{min(use):.0f} max {max(use):.0f}); wall {r.wall:.0f} s, peak RSS {r.rss:.0f} MB, others "
            f"{r.others:.2f} cores")
        return r, tp

    for i in range(PAIRS):
        say(f"  pair {i + 1}")
        res = pair(f"{label} pair {i + 1}", do, idx=i)
        for s in res:
            runs[s].append(res[s][0])
            tps[s].append(res[s][1])
    shutil.rmtree(WORK / "thr_run", ignore_errors=True)
    pr = [b / a for a, b in zip(tps["A"], tps["B"])]
    ratio = sum(tps["B"]) / sum(tps["A"])
    allr = runs["A"] + runs["B"]
    say(f"  kept: A " + " ".join(f"{x:.0f}{r.mark}" for x, r in zip(tps["A"], runs["A"]))
        + " | B " + " ".join(f"{x:.0f}{r.mark}" for x, r in zip(tps["B"], runs["B"])) + " tgt tok/s")
    say(f"  B/A pooled {ratio:.3f} (sums {sum(tps['B']):.0f} / {sum(tps['A']):.0f}; pairs "
        + " ".join(f"{x:.3f}" for x in pr) + f"); {noise_note(allr, label)}")
    ROWS["train"].append(("train tgt tok/s (mean of kept runs)", f"{statistics.mean(tps['A']):.0f}",
                          f"{statistics.mean(tps['B']):.0f}", ratio, allr, "rate: >1 = B faster (pooled)"))
    ra, rb = max(r.rss for r in runs["A"]), max(r.rss for r in runs["B"])
    ROWS["train"].append(("train peak RSS (MB, max)", f"{ra:.0f}", f"{rb:.0f}", rb / ra, allr,
                          "memory: <1 = B smaller"))

# --- table -------------------------------------------------------------------------------------
rows = ROWS["train"] + ROWS["translate"] + ROWS["startup"]
say(f"\n== after/before: A={A} ({rev(A)})  B={B} ({rev(B)})")
say(f"others: the most CPU (cores) other processes used during any kept run of the row (* above {NOISY})")
w0 = max([len(r[0]) for r in rows] + [10])
say(f"{'measure':{w0}s} | {'A (before)':>10s} | {'B (after)':>10s} | {'B/A':>6s} | others | reading")
say(f"{'-' * w0}-|-{'-' * 10}-|-{'-' * 10}-|-{'-' * 6}-|--------|--------")
for label, a, b, r, runs_, note in rows:
    o = max(x.others for x in runs_)
    say(f"{label:{w0}s} | {a:>10s} | {b:>10s} | {r:6.3f} | {o:5.2f}{'*' if any(x.noisy for x in runs_) else ' '} | {note}")
say(f"total {time.time() - T_START:.0f} s; logs in {LOGS}; load avg now {os.getloadavg()[0]:.2f}")
PY

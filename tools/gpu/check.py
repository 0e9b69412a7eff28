#!/usr/bin/env python3
"""The GPU device check of ember: kernel parity and training throughput against PyTorch (cuDNN).

On the device machine, `bash .gpu/check.sh` (tools/gpu/check.sh) runs this with the prepared
`.gpu/bin/train_bench` and `.gpu/bench.py`. It
  1. logs the machine: date, uname, nvidia-smi, the GPU's name, PyTorch's version and CUDA;
  2. runs `train_bench --task parity --backend B` for wgpu and cuda (cuda is skipped where no
     GPU is found or the binary was built without CUDA) and tables its JSON lines;
  3. times issue 21's workloads on ember wgpu, ember cuda and PyTorch on CUDA (bench.py),
     beside the targets (a missed target is reported with a cross, it does not fail the check);
  4. writes to --out ($OUT): gpu-check.md (summary, both tables and a section ready for
     BENCHMARKS.md), gpu-check.jsonl (every raw result line, with its workload and runner)
     and log.txt (this output, with the stderr of every failed run).
Exit status: 0 when every parity case passed or was skipped, 1 otherwise. The whole run stops
starting programs after --budget seconds, so the device check ends within 8 minutes.

Dry run, without a GPU (wgpu on lavapipe, tiny shapes, PyTorch only where it has CUDA):
  python3 tools/gpu/check.py --dry-run --bin target/release/examples --bench-py tools/bench/bench.py --out /tmp/gpu-check
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

BACKENDS = ("wgpu", "cuda")
STEPS = (30, 3)  # timed and warm-up training steps on the device
HEAVY_STEPS = (10, 2)  # the same for the 2x1024 B128 T256 row
DRY_STEPS = (2, 1)
DRY_SHAPE = {"hidden": 32, "batch": 4, "seq": 8}
DRY_GEN_LEN = 20  # sampled characters in a dry run (both benches default to 1000)
MIN_LEFT_S = 5  # no program is started with less of the budget left
USER_CONFIG = "configs/names-lstm.toml"  # what the users' path trains (relative to the repository)
DRY_NAMES = 60  # names the dry run's users' path trains on


@dataclass
class Workload:
    key: str  # matched by --only, and named by other rows' targets
    name: str
    flags: dict  # the workload flags train_bench and bench.py share
    targets: tuple = ()  # (backend, minimum ratio, reference row's key; None: PyTorch)
    steps: tuple = STEPS
    torch_key: str = "tokens_per_s"  # bench.py's figure; train_bench's is always tokens_per_s
    env: tuple = ()  # (name, value) pairs set for ember's runs
    torch: bool = True  # whether PyTorch runs this row (not for ember-only variants)


SHAKESPEARE = {"task": "charlm", "model": "lstm", "embed": 64, "dropout": 0.2, "clip": 1}
WORKLOADS = (
    Workload("lstm", "char-LM LSTM 2x256 (shakespeare-lstm: embed 64, dropout 0.2, clip 1), B32 T100",
             SHAKESPEARE, (("cuda", 1.0, None), ("wgpu", 0.5, None),
                           ("wgpu", 0.95, "lstm-no-dropout"), ("cuda", 0.95, "lstm-no-dropout"))),
    Workload("lstm-no-dropout", "char-LM LSTM 2x256 without dropout (dropout's cost), B32 T100",
             dict(SHAKESPEARE, dropout=0)),
    Workload("lstm-1024", "GPU-sized LSTM 2x1024, B128 T256",
             {"task": "charlm", "model": "lstm", "layers": 2, "hidden": 1024, "batch": 128,
              "seq": 256}, (("cuda", 1.0, None),), HEAVY_STEPS),
    Workload("lstm-1024-persistent", "the same with the persistent LSTM kernel (EMBER_PERSISTENT=1)",
             {"task": "charlm", "model": "lstm", "layers": 2, "hidden": 1024, "batch": 128,
              "seq": 256}, (("cuda", 1.0, "lstm-1024"),), HEAVY_STEPS,
             env=(("EMBER_PERSISTENT", "1"),), torch=False),
    Workload("lstm-persistent", "char-LM LSTM 2x256 (shakespeare-lstm) with ember's persistent LSTM kernel "
             "(EMBER_PERSISTENT=1)",
             SHAKESPEARE, (("cuda", 1.0, "lstm"), ("wgpu", 1.0, "lstm")),
             env=(("EMBER_PERSISTENT", "1"),), torch=False),
    Workload("gru", "char-LM GRU 2x256 (embed 64, dropout 0.2, clip 1), B32 T100",
             dict(SHAKESPEARE, model="gru"), (("cuda", 1.0, None),)),
    Workload("rnn", "char-LM RNN 2x256 (embed 64, dropout 0.2, clip 1), B32 T100",
             dict(SHAKESPEARE, model="rnn"), (("cuda", 1.0, None),)),
    Workload("packed", "names LSTM 1x128 packed (embed 32, clip 1), B64 lengths 3-15",
             {"task": "packed", "model": "lstm", "embed": 32, "clip": 1}, (("cuda", 2.0, None),)),
    Workload("sample", "sampling LSTM 2x256, chars/s", {"task": "sample", "model": "lstm"},
             (("cuda", 5.0, None),), torch_key="chars_per_s"),
)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True, type=Path, help="folder holding train_bench")
    p.add_argument("--bench-py", required=True, type=Path, help="tools/bench/bench.py")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-check-out"),
                   help="output folder (default: $OUT, else ./gpu-check-out)")
    p.add_argument("--dry-run", action="store_true", help="tiny steps and shapes, for a machine without a GPU")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, of wgpu,cuda")
    p.add_argument("--only", help="run only the bench rows whose key or name contains this")
    p.add_argument("--timeout", type=float, help="seconds per program (default 240; dry run 600)")
    p.add_argument("--budget", type=float, help="seconds after which no program starts (default 450; dry run 1500)")
    a = p.parse_args()
    a.backends = a.backends.split(",")
    if not set(a.backends) <= set(BACKENDS):
        p.error(f"--backends takes {','.join(BACKENDS)}")
    a.timeout = a.timeout or (600 if a.dry_run else 240)
    a.budget = a.budget or (1500 if a.dry_run else 450)
    return a


def capture(cmd, timeout=60, env=()):
    """(exit status or None, stdout, stderr) of `cmd` with the variables `env` added; None when
    it could not run or timed out."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, **dict(env)))
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {timeout:.0f} s"
    except OSError as e:
        return None, "", f"cannot run {cmd[0]}: {e}"


def reason(stderr):
    """The telling line of a failed run's stderr: a panic, an error line, else its last line."""
    lines = [s.strip() for s in stderr.splitlines()
             if s.strip() and not s.startswith((" ", "WARNING: lavapipe"))]
    for i, line in enumerate(lines):
        if "panicked" in line:
            return " ".join(lines[i:i + 2])
        if line.startswith("train_bench:") or "error" in line.lower():
            return line
    return lines[-1] if lines else "no output"


class Report:
    """log.txt, gpu-check.jsonl and the time budget."""

    def __init__(self, out, budget):
        self.log = open(out / "log.txt", "w", encoding="utf-8")
        self.jsonl = open(out / "gpu-check.jsonl", "w", encoding="utf-8")
        self.deadline = time.monotonic() + budget

    def say(self, text, echo=True):
        if echo:
            print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def record(self, **entry):
        self.jsonl.write(json.dumps(entry) + "\n")
        self.jsonl.flush()

    def left(self):
        return self.deadline - time.monotonic()

    def run(self, cmd, timeout, env=()):
        """Runs `cmd` within the budget; a failure's stderr goes to log.txt only."""
        self.say("$ " + "".join(f"{k}={v} " for k, v in env) + shlex.join(map(str, cmd)))
        rc, out, err = capture(cmd, min(timeout, self.left()), env)
        if rc != 0:
            self.say(f"exit status {rc}, stderr:\n{err[-3000:]}", echo=False)
        return rc, out, err


def header(rep):
    """Logs the machine; returns what the rest needs of it."""
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "uname": capture(["uname", "-a"])[1].strip()}
    rc, smi, _ = capture(["nvidia-smi"])
    info["smi"] = smi.strip() if rc == 0 else "nvidia-smi: not found"
    rc, names, _ = capture(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    info["gpu"] = names.strip().splitlines()[0] if rc == 0 and names.strip() else None
    rc, torch, err = capture([sys.executable, "-c", "import torch; print(torch.__version__, "
                              "torch.cuda.is_available(), torch.backends.cudnn.version())"])
    info["torch"] = torch.strip() if rc == 0 else f"not installed ({reason(err)})"
    info["torch_skip"] = ("skipped: PyTorch not installed" if rc != 0
                          else None if torch.split()[1:2] == ["True"] else "skipped: no CUDA")
    info["vulkan"] = ", ".join(f"{k}={os.environ[k]}" for k in (
        "VK_DRIVER_FILES", "__EGL_VENDOR_LIBRARY_FILENAMES", "LD_LIBRARY_PATH") if k in os.environ)
    for key in ("date", "uname", "smi", "gpu", "torch", "vulkan"):
        rep.say(f"{key}: {info[key]}")
    return info


def parity(args, info, rep):
    """Runs `train_bench --task parity` on each backend; returns each backend's status
    ("ok", "failed: why" or "skipped: why") and the table's rows."""
    status, rows = {}, []
    for b in BACKENDS:
        if b not in args.backends:
            status[b] = "skipped: not in --backends"
        elif b == "cuda" and not info["gpu"]:
            status[b] = "skipped: no GPU (nvidia-smi)"
        elif rep.left() < MIN_LEFT_S:
            status[b] = "failed: time budget spent before it ran"
        else:
            runs = [parity_run(args, b, rep, rows, env) for env in ((), (("EMBER_PERSISTENT", "1"),))]
            status[b] = next((r for r in runs if not r.startswith("ok")), runs[0])
        rep.say(f"parity on {b}: {status[b]}")
    return status, rows


def json_lines(text):
    """The JSON objects among `text`'s lines."""
    objects = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                objects.append(json.loads(line))
            except ValueError:
                continue
    return objects


def parity_run(args, backend, rep, rows, env):
    """One backend's parity run with the variables `env`, its cases added to `rows`; returns
    its status."""
    rc, out, err = rep.run([args.bin / "train_bench", "--task", "parity", "--backend", backend],
                           args.timeout, env)
    if "built without CUDA" in err:
        return "skipped: not in this build"
    cases = [c for c in json_lines(out) if "parity" in c]
    for c in cases:
        rep.record(check="parity", backend=backend, result=c)
        kernel = ", persistent kernel" if c.get("persistent") else ""
        rows.append((cell(str(c["parity"]) + kernel), backend, number(c.get("max_rel"), ".2e"),
                     cell(str(c.get("worst", "–"))), number(c.get("tolerance"), ".0e"),
                     "✓" if c.get("ok") is True else "✗"))
    bad = sum(c.get("ok") is not True for c in cases)
    if (rc != 0 and not bad) or not cases:
        why = reason(err) if rc != 0 else "no parity cases printed"
        rep.record(check="parity", backend=backend, error=why)
        rows.append(("(the run)", backend, "–", "–", "–", "✗ " + cell(why)))
        return "failed: " + why
    return f"failed: {bad} of {len(cases)} cases" if bad else f"ok ({len(cases)} cases)"


def users_path(args, status, rep):
    """`ember train` (one epoch of names-lstm) then `ember sample` from its checkpoint, on each
    backend, as a user runs them; returns {backend: what happened}."""
    ember = args.bin / "ember"
    if not ember.exists():
        return {b: "skipped: no ember binary beside train_bench" for b in BACKENDS}
    # Run directories stay out of --out: $OUT brings back only a few files.
    work = Path(tempfile.mkdtemp(prefix="ember-gpu-check-"))
    extra = []
    if args.dry_run:
        tiny = work / "names-tiny.txt"
        lines = Path("assets/names.txt").read_text(encoding="utf-8").splitlines()[:DRY_NAMES]
        tiny.write_text("\n".join(lines) + "\n", encoding="utf-8")
        extra = ["--set", f"data.path={tiny.resolve()}", "--set", "model.hidden_size=16"]
    results = {}
    for b in BACKENDS:
        if status[b].startswith("skipped"):
            results[b] = status[b]
            continue
        run_dir = work / f"run-{b}"
        start = time.monotonic()
        rc, out, err = rep.run([ember, "train", "--config", USER_CONFIG, "--backend", b, "--epochs", "1",
                                "--no-tui", "--overwrite", "--artifacts", run_dir, *extra], args.timeout)
        took = time.monotonic() - start
        best = [l for l in out.splitlines() if l.startswith("best checkpoint")]
        if rc != 0 or not best:
            results[b] = "failed: train: " + (reason(err) if rc != 0 else "no best checkpoint line")
        else:
            rc, out, err = rep.run([ember, "sample", "--run", run_dir, "--backend", b, "--n", "5"], args.timeout)
            sampled = ", ".join(out.split()[:5])
            results[b] = (f"trained 1 epoch in {took:.1f} s: {best[0].split('(', 1)[-1].rstrip(')')}; "
                          f"sampled: {sampled}" if rc == 0 else "failed: sample: " + reason(err))
        rep.record(check="users-path", backend=b, result=results[b])
        rep.say(f"users' path on {b}: {results[b]}")
    return results


def bench_flags(w, dry):
    """The workload's flags for both benches, as arguments."""
    timed, warmup = DRY_STEPS if dry else w.steps
    flags = dict(w.flags, steps=timed, warmup=warmup)
    if dry:
        flags.update(DRY_SHAPE)
        if w.flags["task"] == "sample":
            flags["gen-len"] = DRY_GEN_LEN
    return [s for k, v in flags.items() for s in (f"--{k}", str(v))]


def measure(rep, w, runner, cmd, key, timeout, env=()):
    """One bench run: its figure, or "failed: why"."""
    if rep.left() < MIN_LEFT_S:
        return "skipped: time budget spent"
    rc, out, err = rep.run(cmd, timeout, env)
    result = (json_lines(out) or [{}])[-1]
    value = result.get(key) if rc == 0 else None
    if not isinstance(value, (int, float)):
        why = reason(err) if rc != 0 else f"no {key} in its output"
        rep.record(check="bench", workload=w.key, runner=runner, command=list(map(str, cmd)), error=why)
        rep.say(f"  {runner}: failed: {why}")
        return "failed: " + why
    rep.record(check="bench", workload=w.key, runner=runner, command=list(map(str, cmd)), result=result)
    rep.say(f"  {runner}: {value:.0f}")
    return float(value)


def benches(args, info, status, rep):
    """Times every selected workload; returns {key: {"wgpu"|"cuda"|"torch": figure or text}}."""
    results = {}
    for w in WORKLOADS:
        if args.only and args.only.lower() not in (w.key + " " + w.name).lower():
            continue
        rep.say(f"bench {w.key}: {w.name}")
        flags = bench_flags(w, args.dry_run)
        cells = {}
        for b in BACKENDS:
            cells[b] = status[b] if status[b].startswith("skipped") else measure(
                rep, w, f"ember {b}", [args.bin / "train_bench", *flags, "--backend", b],
                "tokens_per_s", args.timeout, w.env)
        cells["torch"] = "skipped: ember only" if not w.torch else info["torch_skip"] or measure(
            rep, w, "PyTorch cuda", [sys.executable, args.bench_py, *flags, "--json", "--device", "cuda"],
            w.torch_key, args.timeout)
        results[w.key] = cells
    return results


def cell(v):
    """A table cell: a figure, "skipped" (the summary says why), or why it failed."""
    if isinstance(v, float):
        return f"{v:.0f}"
    return "skipped" if v.startswith("skipped") else v.replace("|", "\\|")[:120]


def number(v, spec):
    """A JSON number for a table; null (train_bench's NaN or ∞) as "NaN/∞"."""
    return format(v, spec) if isinstance(v, (int, float)) else "NaN/∞" if v is None else "–"


def ratio(a, b):
    return a / b if isinstance(a, float) and isinstance(b, float) and b > 0 else None


def verdicts(w, results):
    """The row's targets, each with ✓, ✗ or – (not measured) and the ratio measured."""
    parts = []
    for backend, minimum, ref in w.targets:
        base = results[w.key]["torch"] if ref is None else results.get(ref, {}).get(backend)
        r = ratio(results[w.key][backend], base)
        mark = "–" if r is None else f"{'✓' if r >= minimum else '✗'} ({r:.2f})"
        parts.append(f"{backend} ≥{minimum}× {'PyTorch' if ref is None else ref + ' row'} {mark}")
    return "; ".join(parts) or "–"


def bench_table(results):
    lines = ["| workload (tokens/s; sampling: chars/s) | ember wgpu | ember cuda | PyTorch cuda (cuDNN) "
             "| cuda / PyTorch | wgpu / PyTorch | target |", "|---|---|---|---|---|---|---|"]
    for w in (w for w in WORKLOADS if w.key in results):
        c = results[w.key]
        r = [ratio(c[b], c["torch"]) for b in ("cuda", "wgpu")]
        lines.append(f"| {w.name} | {cell(c['wgpu'])} | {cell(c['cuda'])} | {cell(c['torch'])} | "
                     + " | ".join("–" if x is None else f"{x:.2f}" for x in r) + f" | {verdicts(w, results)} |")
    return "\n".join(lines)


def failed(status):
    """Whether a backend's parity failed."""
    return any(s.startswith("failed") for s in status.values())


def markdown(args, info, status, parity_rows, users, results):
    """gpu-check.md: the summary, both tables, and the section for BENCHMARKS.md."""
    run = "dry run, " if args.dry_run else ""
    shape = ", ".join(f"{k} {v}" for k, v in DRY_SHAPE.items())
    steps = (f"{DRY_STEPS[0]} timed steps after {DRY_STEPS[1]} warm-up, {shape}, "
             f"{DRY_GEN_LEN} sampled chars" if args.dry_run else
             f"{STEPS[0]} timed steps after {STEPS[1]} warm-up steps (2x1024: {HEAVY_STEPS[0]} after "
             f"{HEAVY_STEPS[1]}; sampling: 1000 chars after 50)")
    command = "python3 " + shlex.join(sys.argv) if args.dry_run else "bash .gpu/check.sh"
    if args.only and not args.dry_run:
        command += " --only " + shlex.quote(args.only)
    if args.backends != list(BACKENDS) and not args.dry_run:
        command += " --backends " + ",".join(args.backends)
    table = bench_table(results)
    users_list = "\n".join(f"- {b}: {cell(u) if u.startswith('skipped') else u}" for b, u in users.items())
    parity = "; ".join(f"{b} {s}" for b, s in status.items())
    parity_table = "\n".join(["| case | backend | max rel. difference | worst at | tolerance | ok |",
                              "|---|---|---|---|---|---|"]
                             + [f"| {' | '.join(r)} |" for r in parity_rows])
    return f"""# GPU check, {info['date']}: {'FAILED' if failed(status) else 'PASSED'}

{run}GPU: {info['gpu'] or 'none'}; PyTorch: {info['torch']}; {info['vulkan'] or 'no Vulkan variables set'}
`{info['uname']}`

Parity: {parity}

```
{info['smi']}
```

## Kernel parity

{parity_table}

## A user's run: `ember train --config {USER_CONFIG} --backend B --epochs 1`, then `ember sample`

{users_list}

## Throughput

{table}

## For BENCHMARKS.md

```markdown
## {info['date']}: GPU device check, {run}{info['gpu'] or 'no GPU'}

ember `train_bench` (wgpu on Vulkan, cuda) beside PyTorch on CUDA (cuDNN; PyTorch, CUDA, cuDNN:
{info['torch']}), one process per cell, {steps}. Kernel parity: {parity}.
Command: `{command}`

{table}
```
"""


def main():
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rep = Report(args.out, args.budget)
    rep.say(f"GPU check{' (dry run)' if args.dry_run else ''}: {shlex.join(sys.argv)}")
    info = header(rep)
    status, parity_rows = parity(args, info, rep)
    users = users_path(args, status, rep)
    results = benches(args, info, status, rep)
    text = markdown(args, info, status, parity_rows, users, results)
    (args.out / "gpu-check.md").write_text(text, encoding="utf-8")
    rep.say(text)
    return 1 if failed(status) or failed(users) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU checks in one command: CUDA tests, R1 EWC, the vdv-permuted protocol, population speed.

Needs only torch (and numpy; no Ray, no Optuna) and the MNIST files, so that it runs on a lent
GPU machine that has nothing else:

    python benchmarks/gpu_suite.py --data-root DIR --out DIR        # about 6-8 minutes on an H200
    python benchmarks/gpu_suite.py --smoke --device cpu --out /tmp/s  # the same steps, tiny, on CPU

Steps (each timed; a failing step is recorded and the suite goes on):
1. ``tests/core/test_cuda.py`` (pytest): member equivalence, determinism and random streams on
   the GPU.
2. Population speed (``benchmarks/population_speed.py``): EWC and DER++ on vdv-permuted shapes
   (shortened to 2 tasks of 300 steps: steps per second do not depend on the length) at
   N = 1, 16, 64, 256; ER, DER++, iCaRL and BI-R on split digits at N = 1, 32; the
   conv net on CIFAR-shaped random tensors (speed only) at N = 1, 16, 64; trials per
   GPU-minute against the per-trial path (measured at N = 1).
3. R1 EWC: ``--preset classic-permuted --method ewc``, one run (the classic script's numbers).
4. The vdv-permuted protocol (10 tasks of 5,000 steps, 1024-1000-1000, domain-IL), one seed,
   for finetune, EWC and DER++, run side by side as three processes: the Permuted MNIST row of
   docs/validation.md. It gets what is left of ``--budget`` seconds but ``--reserve``; a run
   still going then is stopped and its finished tasks are read from its log.
5. The ``tf32`` opt-in off vs on (RunConfig.tf32: TF32 matmuls and convolutions), EWC on
   vdv-permuted shapes and the conv net at N = 64 (skipped if the budget is spent).
Writes three files into ``--out``: ``suite.json`` (everything), ``suite.md`` (the tables) and
``logs.txt`` (the runs' logs; their files are kept in a scratch folder), and prints the tables
last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import population_speed  # noqa: E402

VDV_METHODS = ("finetune", "ewc", "derpp")


def step(name: str, results: dict, fn) -> None:
    """Run one step, recording its outcome and seconds; a failure does not stop the suite."""
    start = time.perf_counter()
    print(f"== {name}", flush=True)
    try:
        results[name] = {"ok": True, "result": fn()}
    except Exception as exc:  # noqa: BLE001 - recorded, the suite goes on
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(f"   failed: {type(exc).__name__}: {exc}", flush=True)
    results[name]["seconds"] = round(time.perf_counter() - start, 1)
    print(f"   {results[name]['seconds']} s", flush=True)


def environment(device: str) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def cuda_tests(out: Path) -> dict:
    log = out / "cuda_tests.log"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/core/test_cuda.py",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    log.write_text(proc.stdout + proc.stderr)
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"returncode": proc.returncode, "summary": tail}


def cl_run(args: list[str], json_path: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cl_core", *args, "--progress", "off", "--json", str(json_path)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)


def read_run(json_path: Path) -> dict:
    data = json.loads(json_path.read_text())
    test = data.get("acc_test") or data.get("test") or []
    out = {"status": data.get("status"), "seconds": sum(data.get("seconds", []) or [0])}
    if test:
        last = test[-1]
        out["final_test"] = [round(100 * a, 2) for a in last]
        out["final_avg_test"] = round(100 * sum(last) / len(last), 2)
    out["metrics"] = data.get("metrics", {}).get("test")
    return out


def r1_ewc(args, out: Path) -> dict:
    flags = ["--preset", "classic-permuted", "--method", "ewc", "--device", args.device]
    flags += ["--data-root", args.data_root] if args.data_root else []
    if args.smoke:
        flags += ["--tasks", "2", "--iterations", "20"]
    proc = cl_run(flags, out / "r1_ewc.json", out / "r1_ewc.log")
    if proc.wait(timeout=600):
        raise RuntimeError((out / "r1_ewc.log").read_text()[-2000:])
    return read_run(out / "r1_ewc.json")


def vdv_permuted(args, out: Path, deadline: float) -> dict:
    procs = {}
    for method in args.vdv_methods:
        flags = ["--preset", "vdv-permuted", "--scenario", "domain", "--method", method]
        flags += ["--seed", "1", "--val-fraction", "0", "--device", args.device]
        flags += ["--data-root", args.data_root] if args.data_root else []
        if args.smoke:
            flags += ["--tasks", "2", "--iterations", "20"]
        procs[method] = cl_run(flags, out / f"vdv_{method}.json", out / f"vdv_{method}.log")
    results = {}
    for method, proc in procs.items():
        try:
            code = proc.wait(timeout=max(deadline - time.perf_counter(), 1))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        log = (out / f"vdv_{method}.log").read_text()
        if code == 0:
            results[method] = read_run(out / f"vdv_{method}.json")
        else:  # the per-task rows printed so far: "learned | T0 .. | avg | loss | s"
            rows = [line for line in log.splitlines() if line.strip()[:1].isdigit()]
            results[method] = {
                "status": "stopped" if code is None else "failed",
                "rows": rows,
                "log_tail": log[-1500:],
            }
    return results


def speed(args, out: Path, method: str, protocol: str, sizes: list[int], iterations: int, extra=()):
    argv = ["--method", method, "--protocol", protocol, "--device", args.device, "--repeats", "1"]
    argv += ["--per-trial", "1", "--tasks", "2", "--iterations", str(iterations)]
    argv += ["--sizes", *map(str, sizes), *extra]
    if args.data_root:
        argv += ["--data-root", args.data_root]
    return population_speed.main(argv)


DIGITS_METHODS = ("er", "derpp", "icarl", "bir")


def digits_speed(args, out: Path, sizes: list[int]) -> list[dict]:
    """The replay family and generative replay on split digits (class-IL, MLP 100-100, 10
    epochs of batch 32): the launch-bound sweeps a GPU population should speed up most."""
    rows = []
    for method in DIGITS_METHODS:
        argv = ["--method", method, "--protocol", "digits-split", "--device", args.device]
        argv += ["--repeats", "1", "--per-trial", "1", "--sizes", *map(str, sizes)]
        argv += ["--tasks", "2", "--iterations", "5"] if args.smoke else []
        rows += population_speed.main(argv)
    return rows


def tf32_ab(args, out: Path, size: int, iterations: int) -> dict:
    """The ``tf32`` opt-in (RunConfig.tf32) off, then on: EWC on vdv-permuted shapes, and the
    conv net, which TF32 convolutions speed up most."""
    rows = {}
    for flag in (False, True):
        extra = ["--tf32"] if flag else []
        name = "tf32" if flag else "fp32"
        rows[name] = speed(args, out, "ewc", "vdv-permuted", [size], iterations, extra)
        conv_steps = max(iterations // 6, 3)
        rows[f"conv {name}"] = speed(args, out, "finetune", "conv", [size], conv_steps, extra)
    return rows


def markdown(results: dict) -> str:
    lines = ["# GPU suite", "", "```", json.dumps(results.get("environment"), indent=1), "```", ""]
    for name, entry in results.items():
        if name == "environment":
            continue
        lines.append(f"## {name} ({entry.get('seconds')} s)")
        if not entry.get("ok"):
            lines += ["", f"FAILED: {entry.get('error')}", ""]
            continue
        result = entry["result"]
        rows = result if isinstance(result, list) else None
        if rows and isinstance(rows[0], dict) and "n" in rows[0]:
            lines += [
                "",
                "| method | N | population s | per trial s | trials/min pop | "
                "trials/min per trial | speedup | max Δ (samples) |",
                "|---|---|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {r['method']} | {r['n']} | {r['population_s']:.2f} | {r['per_trial_s']:.2f} | "
                f"{r['population_trials_per_min']:.1f} | {r['per_trial_trials_per_min']:.1f} | "
                f"{r['speedup']:.2f}x | {r['max_test_diff_samples']:.1f} |"
                for r in rows
            ]
        else:
            lines += ["", "```", json.dumps(result, indent=1, default=str), "```"]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("CLSWEEP_DATA"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU rehearsal)")
    parser.add_argument("--skip", nargs="*", default=[], help="step names to skip")
    parser.add_argument(
        "--vdv-methods", nargs="+", default=list(VDV_METHODS), help="methods of vdv_permuted"
    )
    parser.add_argument("--budget", type=float, default=520.0, help="seconds for the whole suite")
    parser.add_argument(
        "--reserve", type=float, default=120.0, help="seconds the vdv runs leave for the A/B steps"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    if args.data_root:
        os.environ["CLSWEEP_DATA"] = args.data_root
    results: dict = {"environment": environment(args.device)}
    sizes = [1, 2] if args.smoke else [1, 16, 64, 256]
    iters = 5 if args.smoke else 300
    deadline = time.perf_counter() + args.budget
    # (name, step, seconds it needs at least: skipped when less is left of the budget)
    steps = [
        ("cuda_tests", lambda: cuda_tests(scratch), 0),
        ("speed_ewc", lambda: speed(args, args.out, "ewc", "vdv-permuted", sizes, iters), 0),
        ("speed_derpp", lambda: speed(args, args.out, "derpp", "vdv-permuted", sizes, iters), 0),
        (
            "speed_digits",
            lambda: digits_speed(args, args.out, [sizes[0], 2 if args.smoke else 32]),
            0,
        ),
        (
            "speed_conv",
            lambda: speed(args, args.out, "er", "conv", sizes[:3], max(iters // 6, 3)),
            0,
        ),
        ("r1_ewc", lambda: r1_ewc(args, scratch), 0),
        ("vdv_permuted", lambda: vdv_permuted(args, scratch, deadline - args.reserve), 0),
        ("tf32", lambda: tf32_ab(args, args.out, sizes[-2] if len(sizes) > 2 else 1, iters), 30),
    ]
    for name, fn, needs in steps:
        left = deadline - time.perf_counter()
        if name in args.skip or left < needs:
            why = "--skip" if name in args.skip else f"{left:.0f} s of the budget left"
            results[name] = {"ok": False, "error": f"skipped ({why})"}
            continue
        step(name, results, fn)
        (args.out / "suite.json").write_text(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    (args.out / "suite.md").write_text(text)
    logs = [f"===== {p.name}\n{p.read_text()}" for p in sorted(scratch.glob("*.log"))]
    (args.out / "logs.txt").write_text("\n".join(logs))
    print(text)


if __name__ == "__main__":
    main()

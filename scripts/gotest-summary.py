#!/usr/bin/env python3
"""Summarize `go test -json` output; used by scripts/test.sh.

Reads the JSON event stream on stdin and
  * writes go test's plain -v text (the events' Output) to --log, complete;
  * streams that text to stdout as it arrives, less the "=== RUN" and "=== PAUSE"
    lines unless --verbose ("=== CONT/NAME" stay: they tell whose output follows;
    "--- PASS/FAIL/SKIP" lines, each package's closing "ok"/"FAIL" line and
    anything that is not JSON always show); packages that run in parallel are
    de-interleaved: one streams live, the others follow in one piece each;
  * at the end prints one line per top-level test (PASS/FAIL/SKIP), the failed
    subtests, the TestKafka* (real-broker) counts, and as the very last line:
        N passed, N failed
    counting TOP-LEVEL tests only (a test with subtests counts once, as its own
    result, which fails if any subtest fails). A package that failed without any
    failing test (build error, panic, timeout, TestMain) counts as one failure, and
    so does a non-zero exit of go test with no failure seen (scripts/test.sh appends
    go test's exit status as a last event: {"Action":"eddy-exit","Code":N}).
    Skipped tests count in neither number; their count is on the line before.

Exit status: 1 if anything failed, else 0.
"""
import argparse
import json
import signal
import sys

PROGRESS = ("=== RUN", "=== PAUSE")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", help="write the plain -v output here")
    ap.add_argument("--json-log", help="write the raw JSON events here")
    ap.add_argument("--module", default="", help="module path to strip from package names")
    ap.add_argument("--verbose", action="store_true", help="also stream === RUN lines")
    ap.add_argument("--expect-kafka", action="store_true",
                    help="warn if TestKafka* tests were skipped (a broker was provided)")
    args = ap.parse_args()
    # ^C reaches us too; keep reading until go test's output ends, then summarize.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    log = open(args.log, "w", encoding="utf-8") if args.log else None
    jlog = open(args.json_log, "w", encoding="utf-8") if args.json_log else None
    out = sys.stdout

    def emit(text: str, console: bool = True) -> None:
        if log:
            log.write(text)
        if console:
            out.write(text)
            out.flush()

    # go test -json interleaves the events of packages that run in parallel. To keep
    # the text readable, the output of the first unfinished package (in start order)
    # streams live, the others are held back and printed in one piece after it.
    active: list = []       # packages seen and not yet flushed, in start order
    held: dict = {}         # pkg -> [(text, show)]
    done: set = set()

    def pkg_output(pkg: str, text: str, show: bool) -> None:
        if pkg not in held:
            held[pkg] = []
            active.append(pkg)
        if active[0] == pkg:
            emit(text, show)
        else:
            held[pkg].append((text, show))

    def advance() -> None:
        while active and active[0] in done:
            active.pop(0)
            if active:
                for text, show in held[active[0]]:
                    emit(text, show)
                held[active[0]] = []

    def pkg_done(pkg: str) -> None:
        if pkg not in held:
            held[pkg] = []
            active.append(pkg)
        done.add(pkg)
        advance()

    # (pkg, test) -> {"status": run|pass|fail|skip, "elapsed": float}
    tests: dict = {}
    order: list = []
    pkg_status: dict = {}
    pkg_build_failed: set = set()
    go_exit = 0

    for raw in sys.stdin:
        if jlog:
            jlog.write(raw)
        line = raw.rstrip("\n")
        ev = None
        if line.startswith("{"):
            try:
                ev = json.loads(line)
            except ValueError:
                ev = None
        if not isinstance(ev, dict) or "Action" not in ev:
            emit(raw if raw.endswith("\n") else raw + "\n")
            continue
        action = ev.get("Action")
        if action == "eddy-exit":  # sentinel appended by scripts/test.sh: go test's exit code
            go_exit = int(ev.get("Code", 0))
            continue
        pkg = ev.get("Package") or ev.get("ImportPath", "")
        test = ev.get("Test")
        if action in ("output", "build-output"):
            text = ev.get("Output", "")
            show = args.verbose or not text.lstrip().startswith(PROGRESS)
            if action == "output" and ev.get("Package"):
                pkg_output(ev["Package"], text, show)
            else:
                emit(text, show)
            continue
        if action == "build-fail":
            pkg_build_failed.add(ev.get("ImportPath", "").split(" ")[0])
            continue
        if test is None:
            if action == "start":
                pkg_output(pkg, "", False)
            if action in ("pass", "fail", "skip"):
                pkg_status[pkg] = action
                if ev.get("FailedBuild"):
                    pkg_build_failed.add(pkg)
                pkg_done(pkg)
            continue
        key = (pkg, test)
        if action == "run":
            if key not in tests:
                order.append(key)
            tests[key] = {"status": "run", "elapsed": 0.0}
        elif action in ("pass", "fail", "skip"):
            if key not in tests:
                order.append(key)
            tests[key] = {"status": action, "elapsed": ev.get("Elapsed") or 0.0}

    # Whatever is still held (a stream that ended early).
    for pkg in active:
        for text, show in held[pkg]:
            emit(text, show)
        held[pkg] = []

    # Tests that started but never finished (the binary panicked or timed out).
    for key, t in tests.items():
        if t["status"] == "run":
            t["status"] = "fail"
            t["unfinished"] = True

    def short(pkg: str) -> str:
        if args.module and pkg.startswith(args.module):
            rest = pkg[len(args.module):].lstrip("/")
            return rest or "."
        return pkg

    top = [k for k in order if "/" not in k[1]]
    sub = [k for k in order if "/" in k[1]]
    failed_sub_by_parent: dict = {}
    for k in sub:
        if tests[k]["status"] == "fail":
            parent = (k[0], k[1].split("/")[0])
            failed_sub_by_parent.setdefault(parent, []).append(k[1])

    p = lambda s="": emit(s + "\n")  # noqa: E731
    p()
    p("==================== test summary (top-level tests) ====================")
    width = max([len(k[1]) for k in top] + [4])
    n_pass = n_fail = n_skip = 0
    for k in sorted(top, key=lambda k: (k[0], order.index(k))):
        t = tests[k]
        st = t["status"]
        label = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[st]
        extra = " (did not finish: panic, timeout or interrupt)" if t.get("unfinished") else ""
        p(f"{label}  {k[1]:<{width}}  {short(k[0])}  ({t['elapsed']:.2f}s){extra}")
        for s in failed_sub_by_parent.get(k, []):
            p(f"        failed subtest: {s}")
        if st == "pass":
            n_pass += 1
        elif st == "fail":
            n_fail += 1
        else:
            n_skip += 1

    # Packages that failed with no failing test of their own.
    failed_pkgs_with_tests = {k[0] for k in top if tests[k]["status"] == "fail"}
    pkg_fail_extra = 0
    for pkg in sorted(set(pkg_status) | pkg_build_failed):
        if pkg in failed_pkgs_with_tests:
            continue
        if pkg in pkg_build_failed:
            p(f"FAIL  [build failed]  {short(pkg)}")
            pkg_fail_extra += 1
        elif pkg_status.get(pkg) == "fail":
            p(f"FAIL  [package failed outside any test: panic, timeout, TestMain or race]  {short(pkg)}")
            pkg_fail_extra += 1
    n_fail += pkg_fail_extra
    if go_exit != 0 and n_fail == 0:
        p(f"FAIL  [go test exited with status {go_exit} and no failing test: see its output above]")
        n_fail += 1

    kafka = [k for k in top if k[1].startswith("TestKafka")]
    kp = sum(tests[k]["status"] == "pass" for k in kafka)
    kf = sum(tests[k]["status"] == "fail" for k in kafka)
    ks = sum(tests[k]["status"] == "skip" for k in kafka)
    sub_fail = sum(tests[k]["status"] == "fail" for k in sub)
    sub_skip = sum(tests[k]["status"] == "skip" for k in sub)
    p("-------------------------------------------------------------------------")
    p(f"real-broker tests (TestKafka*): {len(kafka)} ran ({kp} pass, {kf} fail, {ks} skip)")
    if args.expect_kafka and ks:
        p(f"WARNING: {ks} TestKafka* test(s) skipped although a broker was provided")
    p(f"subtests: {len(sub)} ran ({sub_fail} fail, {sub_skip} skip); not counted below")
    p(f"skipped top-level tests: {n_skip}")
    if args.log:
        p(f"full -v output: {args.log}")
    p(f"{n_pass} passed, {n_fail} failed")
    if log:
        log.close()
    if jlog:
        jlog.close()
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())

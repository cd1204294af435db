#!/usr/bin/env python3
"""Mutation run: plant each bug of mutants.tsv in a scratch copy of the sources, one at a time,
rebuild and run the test suite, and require that the suite fails (the mutant is "killed").

    tests/mutation/run.py                 # all mutants (about 25 s each: an hour on 2 vCPUs)
    tests/mutation/run.py --only E1,O7    # the mutants with these ids
    tests/mutation/run.py --sample 6      # 6 mutants spread over the table (CI's smoke run)
    tests/mutation/run.py --check         # only check that every pattern is still in the sources

Each line of mutants.tsv names a file, a piece of its text (once in the file) and its
replacement, and what is expected: "killed", or "equivalent: <why>" for a change that cannot
alter any result (run, not required to fail). A pattern no longer found in its file (the code
changed) is reported as stale: rewrite the line against the new code. Exit status 0 when every
mutant expected to be killed was killed and no pattern is stale.

The sources are copied with `git archive HEAD` (committed code only) into a temporary directory,
built once (Release), then rebuilt incrementally per mutant; ctest stops at the first failure.
The suites that kill processes or build other projects are left out (they test no library math
and take most of the time).
"""

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SKIP_TESTS = "^(consumer|kill_save|kill_resume|fashion_mnist_real)$"


def load(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                sys.exit("%s:%d: want 5 tab-separated fields, got %d" % (path, n, len(parts)))
            mid, fname, old, new, expect = parts
            rows.append((mid, fname, ast.literal_eval(old), ast.literal_eval(new), expect))
    return rows


def run(cmd, cwd, log):
    with open(log, "w") as out:
        return subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated mutant ids")
    ap.add_argument("--sample", type=int, help="run this many mutants, spread evenly over the table")
    ap.add_argument("--check", action="store_true", help="only check the patterns against the sources")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (its path is printed)")
    a = ap.parse_args()

    rows = load(os.path.join(HERE, "mutants.tsv"))
    if a.only:
        want = set(a.only.split(","))
        unknown = want - {r[0] for r in rows}
        if unknown:
            sys.exit("run.py: unknown mutant ids: %s" % ",".join(sorted(unknown)))
        rows = [r for r in rows if r[0] in want]
    elif a.sample:
        step = max(1, len(rows) // a.sample)
        rows = rows[::step][: a.sample]

    stale = []
    for mid, fname, old, _new, _exp in rows:
        count = open(os.path.join(ROOT, fname)).read().count(old)
        if count != 1:
            stale.append(mid)
            print("%s %s: STALE (pattern found %d times)" % (mid, fname, count))
    if a.check:
        print("%d mutants, %d stale" % (len(rows), len(stale)))
        return 1 if stale else 0

    work = tempfile.mkdtemp(prefix="tapegrad-mutation-")
    src, build = os.path.join(work, "src"), os.path.join(work, "build")
    os.mkdir(src)
    archive = subprocess.run(["git", "-C", ROOT, "archive", "HEAD"], stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    jobs = str(os.cpu_count() or 2)
    print("# sources of HEAD in %s; building" % src, flush=True)
    if run(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DAG_BUILD_BENCH=OFF"], work,
           os.path.join(work, "configure.log")) != 0 or \
            run(["cmake", "--build", build, "-j", jobs], work, os.path.join(work, "build.log")) != 0:
        sys.exit("run.py: the unmutated sources do not build (see %s)" % work)
    env = dict(os.environ, AG_TEST_QUICK="1")
    ctest = ["ctest", "-j", jobs, "--stop-on-failure", "-E", SKIP_TESTS]
    if subprocess.run(ctest, cwd=build, stdout=subprocess.DEVNULL, env=env).returncode != 0:
        sys.exit("run.py: the unmutated sources fail their tests")

    survived = []
    t0 = time.time()
    for mid, fname, old, new, expect in rows:
        if mid in stale:
            continue
        path = os.path.join(src, fname)
        text = open(path).read()
        open(path, "w").write(text.replace(old, new, 1))
        try:
            log = os.path.join(work, mid + ".log")
            if run(["cmake", "--build", build, "-j", jobs], work, log) != 0:
                result = "does not compile (rewrite it)"
                survived.append(mid)
            else:
                with open(log, "a") as out:
                    rc = subprocess.run(ctest + ["--output-on-failure"], cwd=build, stdout=out,
                                        stderr=subprocess.STDOUT, env=env).returncode
                if rc != 0:
                    result = "killed"
                elif expect.startswith("equivalent"):
                    result = "survived, as expected (%s)" % expect
                else:
                    result = "SURVIVED"
                    survived.append(mid)
        finally:
            open(path, "w").write(text)
        print("%-5s %-30s %s" % (mid, fname, result), flush=True)
    # leave the build matching the unmutated sources (a kept directory is then reusable)
    run(["cmake", "--build", build, "-j", jobs], work, os.path.join(work, "build.log"))
    print("%d mutants in %.0f s: %d stale, %d survived or broken%s" % (
        len(rows), time.time() - t0, len(stale), len(survived), (": " + ",".join(survived)) if survived else ""))
    if a.keep:
        print("# kept %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if stale or survived else 0


if __name__ == "__main__":
    sys.exit(main())

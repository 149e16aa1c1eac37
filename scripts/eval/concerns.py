#!/usr/bin/env python3
"""Separation-of-concerns evidence for docs/EVALUATION.md (python3 stdlib only).

Counts code lines per concern (election, replication, commit, recovery, reads,
snapshots, and the supporting concerns) for rolepax's Paxos engine and for the Raft
engine (openraft 0.9.25's own source plus the project's glue in src/raft), following
the explicit table scripts/eval/concerns_table.txt, measures how the concerns spread
over files, lists the message types of both engines, merges the measured messages and
fsyncs per committed command (scripts/eval/concerns.sh collects them), and writes
docs/eval/concerns.md (a markdown fragment starting with "## Separation of concerns")
and docs/eval/concerns.csv.

    concerns.py check                 the table covers every counted file; no stale rule
    concerns.py dump [PATH_PREFIX]    per file and function: code lines and concern
    concerns.py report [--measured F] write docs/eval/concerns.{md,csv}

What counts as a code line: a line with at least one character that is neither
whitespace nor inside a comment (`//`, `///`, `//!`, `/* */`, nested). Excluded: imports
(`use`, `mod x;`, `extern crate`: how many lines they take is formatting style), lines
inside an item marked `#[cfg(test)]` or `#[test]` (test modules, test functions, test
impls), and test files (`tests.rs`, `*_test.rs`, `tests/`, `testing/`, `bench/`
directories). A line belongs to the innermost named item around it (function, impl,
trait, struct, enum, module); its qualified name (e.g. `Acceptor::on_prepare`) is what
the table's function patterns match.
"""

import csv
import fnmatch
import glob
import json
import os
import re
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
# CONCERNS_ROOT counts another checkout (the same layout) instead of this one.
ROOT = os.environ.get("CONCERNS_ROOT") or os.path.normpath(os.path.join(HERE, "..", ".."))
# CONCERNS_TABLE names another table (tests/concerns_table.rs shows the check failing).
TABLE = os.environ.get("CONCERNS_TABLE") or os.path.join(HERE, "concerns_table.txt")

# The concerns, in report order. The first six are the question's; the rest hold what
# is neither (and would be there in any engine).
CORE = ["election", "replication", "commit", "recovery", "reads", "snapshots"]
SUPPORT = ["membership", "storage", "transport", "glue", "other"]
CONCERNS = CORE + SUPPORT
EXCLUDED = "-"  # a table concern meaning "deliberately not counted" (say why)

# Files that are tests whatever the table says.
TEST_FILE = re.compile(r"(^|/)(tests?\.rs|testing\.rs|[^/]*_tests?\.rs|tests?/.*|testing/.*|bench/.*)$")


def openraft_src():
    """openraft 0.9.25's source in cargo's registry, or None."""
    home = os.environ.get("CARGO_HOME") or os.path.expanduser("~/.cargo")
    hits = sorted(glob.glob(os.path.join(home, "registry", "src", "*", "openraft-0.9.25", "src")))
    return hits[0] if hits else None


# ---------------------------------------------------------------------------------
# A small Rust reader: which characters are code, and which item each line is in.
# ---------------------------------------------------------------------------------


RAW_START = re.compile(r'b?r(#*)"')


def strip_rust(text):
    """The text with comments blanked (newlines kept) and string/char literal contents
    blanked, so that braces and keywords inside them do not count."""
    out = list(text)
    n = len(text)
    i = 0

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and i + 1 < n and text[i + 1] == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rb" and RAW_START.match(text, i) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = RAW_START.match(text, i)
            close = '"' + m.group(1)
            start = i + len(m.group(0))
            j = text.find(close, start)
            j = n if j < 0 else j
            blank(start, j)  # keep the delimiters: the line still has code
            i = j + len(close)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i + 1, min(j, n))
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}', '\'') or a lifetime ('a).
            if i + 1 < n and text[i + 1] == "\\":
                j = i + 2
                while j < n and text[j] != "'":
                    j += 2 if text[j] == "\\" else 1
                blank(i + 1, min(j, n))
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                blank(i + 1, i + 2)
                i += 3
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


ATTR = re.compile(r"#!?\[[^\]]*\]")
IMPORT = re.compile(r"(#!?\[[^\]]*\]\s*)*(pub(\s*\([^)]*\))?\s+)?(use\b|extern\s+crate\b|mod\s+\w+\s*;)")
CFG_TEST = re.compile(r"#\s*\[\s*(cfg\s*\(\s*test\s*\)|test\b|tokio::test\b|async_entry::test\b)")
NAMED = [
    (re.compile(r"\bfn\s+([A-Za-z_]\w*)"), "fn"),
    (re.compile(r"\b(?:mod)\s+([A-Za-z_]\w*)\s*$"), "mod"),
    (re.compile(r"\b(?:trait)\s+([A-Za-z_]\w*)"), "trait"),
    (re.compile(r"\b(?:struct|enum|union)\s+([A-Za-z_]\w*)"), "type"),
    (re.compile(r"\bmacro_rules!\s*([A-Za-z_]\w*)"), "macro"),
]


def impl_name(header):
    """The self type of an impl header: `impl<T> Foo<T> for Bar<T> where ..` -> Bar."""
    m = re.search(r"\bimpl\b(.*)$", header, re.S)
    if not m:
        return None
    rest = m.group(1)
    rest = re.split(r"\bwhere\b", rest)[0]
    # drop the generic parameter list right after `impl`
    rest = rest.strip()
    if rest.startswith("<"):
        depth = 0
        for k, ch in enumerate(rest):
            depth += ch == "<"
            depth -= ch == ">"
            if depth == 0:
                rest = rest[k + 1:]
                break
    parts = re.split(r"\bfor\b", rest)
    target = parts[-1]
    target = re.sub(r"<.*", "", target.strip(), flags=re.S)
    names = re.findall(r"[A-Za-z_]\w*", target)
    return names[-1] if names else "impl"


class Scope:
    """An open brace: its item's qualified name, whether it is test-only, and for a
    `match` block where the current arm began."""

    def __init__(self, name, test, kind):
        self.name, self.test, self.kind = name, test, kind
        self.parens = 0
        self.arm_start = None  # (char index, line) of the current arm's first character


def header_name(flat):
    """The name of the item a brace opens, from the text before it (`None`: a block)."""
    if re.search(r"\bimpl\b", flat) and not re.search(r"[=(]", flat.split("impl")[0]):
        return impl_name(flat)
    for rx, _kind in NAMED:
        m = rx.search(flat)
        if m and not re.search(r"=\s*$|\blet\b", flat[: m.start()]):
            return m.group(1)
    return None


def scan(path):
    """The code lines of a file: a list of (line number, qualified name, test-only).

    The qualified name is the chain of named items around the line (`Type::fn`), and
    inside a `match` whose arm has a block body, `::@Pattern` for the arm (so the table
    can classify the arms of a dispatching function one by one)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    code = strip_rust(text)
    nlines = text.count("\n") + 1
    owner = [None] * (nlines + 2)  # line -> Scope that owns it
    has_code = [False] * (nlines + 2)
    root = Scope("", False, "root")
    stack = [root]
    line = 1
    header_start, header_line = 0, 1
    seen_header_code = False
    import_at = None  # (first line, depth) of the import statement being read

    def claim(first, last, scope, parent):
        for ln in range(first, last + 1):
            if has_code[ln] and (owner[ln] is None or owner[ln] is parent):
                owner[ln] = scope

    for i, ch in enumerate(code):
        if ch == "\n":
            line += 1
            continue
        if ch.isspace():
            continue
        has_code[line] = True
        top = stack[-1]
        if not seen_header_code:
            seen_header_code = True
            header_start, header_line = i, line
            if import_at is None and IMPORT.match(code, i):
                import_at = (line, len(stack))
        if top.kind == "match" and top.arm_start is None and top.parens == 0 and ch not in ",}":
            top.arm_start = (i, line)
        if owner[line] is None:
            owner[line] = top
        if ch in "([":
            top.parens += 1
        elif ch in ")]":
            top.parens -= 1
        elif ch == "," and top.kind == "match" and top.parens == 0:
            top.arm_start = None
        elif ch == "{":
            header = code[header_start:i]
            test = top.test or bool(CFG_TEST.search(header))
            flat = " ".join(ATTR.sub(" ", header).split())
            arm = None
            if top.kind == "match" and top.parens == 0 and top.arm_start is not None:
                arm_text = code[top.arm_start[0]:i]
                if "=>" in arm_text:
                    pat, _, after = arm_text.partition("=>")
                    arm = (" ".join(pat.split()), after.strip() == "")
            if arm is not None:
                scope = Scope(f"{top.name}::@{arm[0]}", test, "arm" if arm[1] else "armexpr")
                claim(top.arm_start[1], line, scope, top)
            else:
                name = header_name(flat)
                kind = "match" if re.search(r"\bmatch\b", flat) else "block"
                if name is not None:
                    scope = Scope(f"{top.name}::{name}" if top.name else name, test, "item")
                    claim(header_line, line, scope, top)
                else:
                    scope = Scope(top.name, test, kind)
                    if test and not top.test:
                        claim(header_line, line, scope, top)
            stack.append(scope)
            seen_header_code = False
        elif ch == "}":
            if len(stack) > 1:
                closed = stack.pop()
                if closed.kind == "arm":
                    stack[-1].arm_start = None
            seen_header_code = False
        elif ch == ";":
            header = code[header_start:i]
            if seen_header_code and CFG_TEST.search(header) and not top.test:
                claim(header_line, line, Scope(top.name, True, "block"), top)
            if import_at is not None and import_at[1] == len(stack):
                # an import or module declaration: not counted
                for ln in range(import_at[0], line + 1):
                    if has_code[ln]:
                        owner[ln] = Scope(top.name, True, "import")
                import_at = None
            seen_header_code = False
    return [(ln, owner[ln].name, owner[ln].test) for ln in range(1, nlines + 1) if has_code[ln]]


# ---------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------


class Rule:
    def __init__(self, lineno, side, pattern, func, concern, why):
        self.lineno, self.side, self.pattern, self.func = lineno, side, pattern, func
        self.concern, self.why = concern, why
        self.func_rx = None if func == "*" else re.compile(func)
        self.hits = 0

    def spec(self):
        # a function rule beats a file rule; a longer path beats a shorter one
        return (self.func_rx is not None, len(self.pattern.replace("*", "")))

    def matches_path(self, rel):
        return fnmatch.fnmatchcase(rel, self.pattern)


def load_table(path=TABLE):
    rules, errors = [], []
    with open(path, encoding="utf-8") as f:
        for k, raw in enumerate(f, 1):
            s = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
            if not s:
                continue
            parts = s.split(None, 3)
            if len(parts) < 4:
                errors.append(f"{path}:{k}: want SIDE PATH FUNC CONCERN [why], got {s!r}")
                continue
            side, pattern, func, rest = parts
            concern, _, why = rest.partition(" ")
            if side not in ("paxos", "shared", "raft", "openraft"):
                errors.append(f"{path}:{k}: unknown side {side!r}")
                continue
            if concern not in CONCERNS and concern != EXCLUDED:
                errors.append(f"{path}:{k}: unknown concern {concern!r} (one of {', '.join(CONCERNS)} or -)")
                continue
            try:
                rules.append(Rule(k, side, pattern, func, concern, why.strip()))
            except re.error as e:
                errors.append(f"{path}:{k}: bad function pattern {func!r}: {e}")
    return rules, errors


# ---------------------------------------------------------------------------------
# The files counted
# ---------------------------------------------------------------------------------

# Which files each side counts: (side, root, path globs relative to the root).
PROJECT_SCOPE = {
    "paxos": ["src/roles/**", "src/actors/**", "src/driver.rs", "src/messages/**", "src/storage/**"],
    "shared": ["src/net/**"],
    "raft": ["src/raft/**"],
}
# The directories whose every non-test file must be classified (the check's promise).
MUST_COVER = ["src/roles", "src/actors", "src/raft"]


def project_files():
    """(side, display path, absolute path) of the project's counted files. The side of a
    file comes from the table's rule for it (src/messages/raft.rs is the Raft side's)."""
    out = []
    for _side, globs in PROJECT_SCOPE.items():
        for g in globs:
            base = g.split("/**")[0]
            full = os.path.join(ROOT, base)
            if os.path.isfile(full):
                out.append(base)
            else:
                for dirpath, _dirs, files in os.walk(full):
                    for fn in files:
                        if fn.endswith(".rs"):
                            out.append(os.path.relpath(os.path.join(dirpath, fn), ROOT))
    return sorted(set(out))


def openraft_files(src):
    out = []
    for dirpath, _dirs, files in os.walk(src):
        for fn in files:
            if fn.endswith(".rs"):
                out.append(os.path.relpath(os.path.join(dirpath, fn), src))
    return sorted(out)


class Counted:
    """Every counted line: side, file, item, concern."""

    def __init__(self):
        self.rows = []  # (side, file, qualname, concern, lines)
        self.errors = []
        self.files = {}  # display path -> side


def classify(rules, want_openraft=True):
    res = Counted()
    files = [("project", p, os.path.join(ROOT, p)) for p in project_files()]
    src = openraft_src() if want_openraft else None
    if src:
        files += [("openraft", "openraft/" + p, os.path.join(src, p)) for p in openraft_files(src)]
    for origin, disp, full in files:
        rel = disp[len("openraft/"):] if origin == "openraft" else disp
        cand = [r for r in rules if (r.side == "openraft") == (origin == "openraft") and r.matches_path(rel)]
        if TEST_FILE.search(rel):
            continue
        file_rules = [r for r in cand if r.func_rx is None]
        if not file_rules:
            res.errors.append(f"{disp}: no rule in {os.path.relpath(TABLE, ROOT)} covers this file (add `SIDE {rel} * CONCERN why`)")
            continue
        default = max(file_rules, key=lambda r: (r.spec(), -r.lineno))
        res.files[disp] = default.side
        fn_rules = sorted([r for r in cand if r.func_rx is not None and r.side == default.side], key=lambda r: (-r.spec()[1], r.lineno))
        per = defaultdict(int)
        for _ln, q, test in scan(full):
            if test:
                continue
            rule = default
            for r in fn_rules:
                if r.func_rx.search(q):
                    rule = r
                    break
            rule.hits += 1
            per[(q, rule.concern)] += 1
        for (q, concern), n in sorted(per.items()):
            if concern != EXCLUDED:
                res.rows.append((default.side, disp, q, concern, n))
    for r in rules:
        if r.side == "openraft" and not src:
            continue
        if r.func_rx is not None and r.hits == 0:
            res.errors.append(f"{os.path.relpath(TABLE, ROOT)}:{r.lineno}: the rule `{r.pattern} {r.func}` matches no code line (stale?)")
        if r.func_rx is None and r.hits == 0 and not any(r.matches_path(d[len('openraft/'):] if d.startswith('openraft/') else d) for d in res.files):
            res.errors.append(f"{os.path.relpath(TABLE, ROOT)}:{r.lineno}: the rule `{r.pattern}` matches no file (stale?)")
    return res, src


def cmd_check():
    rules, errors = load_table()
    res, src = classify(rules)
    errors += res.errors + message_errors()
    covered = set(res.files)
    for d in MUST_COVER:
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, d)):
            for fn in files:
                rel = os.path.relpath(os.path.join(dirpath, fn), ROOT)
                if fn.endswith(".rs") and not TEST_FILE.search(rel) and rel not in covered and not any(rel in e for e in errors):
                    errors.append(f"{rel}: not classified")
    if errors:
        for e in errors:
            print(f"concerns check: {e}", file=sys.stderr)
        return 1
    n_or = sum(1 for f in res.files if f.startswith("openraft/"))
    print(f"concerns check: {len(res.files) - n_or} project files and {n_or} openraft files classified"
          + ("" if src else " (openraft's source not found: its rules unchecked)"))
    return 0


def cmd_dump(prefix=""):
    rules, errors = load_table()
    res, _ = classify(rules)
    for e in errors + res.errors:
        print(f"! {e}")
    cur = None
    for side, disp, q, concern, n in res.rows:
        if not disp.startswith(prefix):
            continue
        if disp != cur:
            tot = sum(r[4] for r in res.rows if r[1] == disp)
            print(f"\n{disp} [{side}] {tot}")
            cur = disp
        print(f"  {n:5d} {concern:12s} {q}")
    return 0


# ---------------------------------------------------------------------------------
# Measured: messages and fsyncs per committed command
# ---------------------------------------------------------------------------------

MEASURED_CSV = os.path.join(ROOT, "docs", "eval", "concerns-measured.csv")
MEASURED_COLUMNS = [
    "engine", "clients", "puts", "ok", "non_2xx", "errors", "seconds", "throughput_rps", "p50_ms",
    "messages", "fsyncs", "idle_messages_per_s", "idle_fsyncs_per_s", "slots", "per_role", "commit", "date",
]


def http_get(url, timeout=2.0):
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


def prom_parse(text):
    """Prometheus text -> {name{labels}: value}; unparsable samples are skipped."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        key, _, val = ln.rpartition(" ")
        try:
            out[key] = float(val)
        except ValueError:
            pass
    return out


def scrape(urls):
    """Every node's /metrics, with the time it was read; a node that does not answer
    gives {} (its counters then count as missing, not as zero)."""
    snap = []
    for u in urls:
        try:
            snap.append(prom_parse(http_get(u + "/metrics")))
        except Exception:  # noqa: BLE001 - a dead node is reported as missing
            snap.append({})
    return snap


def total(snap, name):
    """The sum of metric `name` over the nodes, or None when some node lacks it."""
    vals = [m.get(name) for m in snap]
    return None if any(v is None for v in vals) else sum(vals)


def delta(before, after, name):
    a, b = total(after, name), total(before, name)
    return None if a is None or b is None else a - b


def raft_kinds(urls):
    """Raft messages sent so far per RPC kind (requests and responses), summed over the
    nodes, from /status (the Raft engine's `messages`); {} for a Paxos node."""
    out = defaultdict(int)

    def find(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "messages" and isinstance(x, dict) and all(isinstance(c, dict) and "requests_sent" in c for c in x.values()):
                    return x
                got = find(x)
                if got is not None:
                    return got
        return None

    for u in urls:
        try:
            kinds = find(json.loads(http_get(u + "/status"))) or {}
        except Exception:  # noqa: BLE001 - a node not answering counts nothing
            kinds = {}
        for kind, c in kinds.items():
            out[kind] += int(c.get("requests_sent", 0)) + int(c.get("responses_sent", 0))
    return out


def free_ports(n):
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def leader_of(urls, engine):
    """The leader some node names, once that node says it runs `engine` (a node built
    before the engine setting existed would silently run Paxos: refused)."""
    for u in urls:
        try:
            st = json.loads(http_get(u + "/status"))
        except Exception:  # noqa: BLE001 - not up yet
            continue
        if st.get("engine") != engine:
            raise RuntimeError(f"{u}/status says engine {st.get('engine')!r}, not {engine!r}")
        lid = st.get("leader_id")
        if lid:
            return lid
    return None


def cmd_measure(args):
    """concerns.py measure --engine E --node BIN --bench BIN [--requests-1 N] [--requests-64 N]
    starts a 3-node cluster of engine E, runs puts at 1 and 64 connections against its
    leader, appends one row per run to --out (CSV)."""
    import shutil
    import subprocess
    import tempfile
    import time

    opts = {"--requests-1": "2000", "--requests-64": "20000", "--out": MEASURED_CSV, "--idle-secs": "3"}
    k = 0
    while k < len(args):
        if args[k] not in ("--engine", "--node", "--bench", "--requests-1", "--requests-64", "--out", "--idle-secs") or k + 1 >= len(args):
            print(f"concerns.py measure: bad argument {args[k]!r}", file=sys.stderr)
            return 2
        opts[args[k]] = args[k + 1]
        k += 2
    for need in ("--engine", "--node", "--bench"):
        if need not in opts:
            print(f"concerns.py measure: {need} is required", file=sys.stderr)
            return 2
    engine = opts["--engine"]
    work = tempfile.mkdtemp(prefix=f"rolepax-concerns-{engine}.")
    ports = free_ports(6)
    nodes = [(i + 1, ports[2 * i], ports[2 * i + 1]) for i in range(3)]
    cfg = os.path.join(work, "cluster.toml")
    with open(cfg, "w") as f:
        f.write(f'cluster_id = "concerns-{engine}"\nengine = "{engine}"\ndata_dir = "{work}/node-{{id}}"\n')
        f.write('log_level = "warn"\n')
        for nid, peer, http in nodes:
            f.write(f'\n[[nodes]]\nid = {nid}\npeer_addr = "127.0.0.1:{peer}"\nhttp_addr = "127.0.0.1:{http}"\n')
    urls = [f"http://127.0.0.1:{http}" for _, _, http in nodes]
    procs = []
    ok_run = False
    try:
        for nid, _, _ in nodes:
            log = open(os.path.join(work, f"node-{nid}.log"), "w")
            procs.append(subprocess.Popen([opts["--node"], "--config", cfg, "--id", str(nid)], stdout=log, stderr=subprocess.STDOUT))
        deadline = time.time() + 60
        leader = None
        while time.time() < deadline and leader is None:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a {engine} node exited at start (logs in {work})")
            leader = leader_of(urls, engine)
            if leader is None:
                time.sleep(0.2)
        if leader is None:
            raise RuntimeError(f"the {engine} cluster elected no leader in 60 s (logs in {work})")
        lurl = dict(zip([n for n, _, _ in nodes], urls))[leader]

        def bench(clients, requests):
            out = os.path.join(work, f"bench-{clients}.jsonl")
            cmd = [opts["--bench"], "--endpoints", lurl, "--clients", str(clients), "--requests", str(requests),
                   "--warmup", "0", "--read-ratio", "0", "--keys", "10000", "--json", out, "--label", f"{engine}-c{clients}"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
            with open(out) as f:
                return json.loads(f.read().strip().splitlines()[-1])

        bench(8, 500)  # warm-up: connections, a leader with its ballot/term settled
        time.sleep(1.0)
        b0, t0 = scrape(urls), time.time()
        time.sleep(float(opts["--idle-secs"]))
        b1, t1 = scrape(urls), time.time()
        idle_msgs = (delta(b0, b1, "rolepax_transport_sent_total") or 0) / (t1 - t0)
        idle_fs = delta(b0, b1, "rolepax_log_fsyncs_total")
        idle_fs = None if idle_fs is None else idle_fs / (t1 - t0)
        rows = []
        for clients, requests in ((1, int(opts["--requests-1"])), (64, int(opts["--requests-64"]))):
            kinds_before = raft_kinds(urls)
            before, tb = scrape(urls), time.time()
            res = bench(clients, requests)
            after, ta = scrape(urls), time.time()
            kinds_after = raft_kinds(urls)
            roles = {}
            for kind in sorted(kinds_after):
                roles[kind] = kinds_after[kind] - kinds_before.get(kind, 0)
            for name in sorted({k for m in after for k in m if k.startswith("rolepax_messages_handled_total{")}):
                d = delta(before, after, name)
                if d is not None:
                    roles[name.split('role="')[1].split('"')[0]] = int(d)
            fs = delta(before, after, "rolepax_log_fsyncs_total")
            msgs = delta(before, after, "rolepax_transport_sent_total")
            slots = None
            lb, la = before[leader - 1].get("rolepax_slots_decided_total"), after[leader - 1].get("rolepax_slots_decided_total")
            if lb is not None and la is not None:
                slots = int(la - lb)
            rows.append({
                "engine": engine, "clients": clients, "puts": requests, "ok": res.get("ok"),
                "non_2xx": res.get("non_2xx"), "errors": res.get("errors"),
                "seconds": round(ta - tb, 3), "throughput_rps": res.get("throughput_rps"),
                "p50_ms": (res.get("latency") or {}).get("p50_ms"),
                "messages": "" if msgs is None else int(msgs), "fsyncs": "" if fs is None else int(fs),
                "idle_messages_per_s": round(idle_msgs, 1),
                "idle_fsyncs_per_s": "" if idle_fs is None else round(idle_fs, 2),
                "slots": "" if slots is None else slots,
                "per_role": " ".join(f"{r}={n}" for r, n in roles.items()),
            })
        # this engine's rows replace its earlier ones; other engines' rows stay
        kept = []
        if os.path.exists(opts["--out"]):
            with open(opts["--out"], newline="") as f:
                kept = [r for r in csv.DictReader(f) if r.get("engine") != engine]
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime())
        head = git("rev-parse", "--short", "HEAD")
        for r in rows:
            r["commit"], r["date"] = head, stamp
        os.makedirs(os.path.dirname(os.path.abspath(opts["--out"])), exist_ok=True)
        with open(opts["--out"], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=MEASURED_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in kept + rows:
                w.writerow(r)
        for r in rows:
            print(f"concerns measure: {engine} c{r['clients']}: {r['ok']} puts in {r['seconds']} s, "
                  f"{r['messages']} messages, {r['fsyncs'] if r['fsyncs'] != '' else 'n/a'} fsyncs", file=sys.stderr)
        ok_run = True
        return 0
    except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as e:
        print(f"concerns measure: {engine}: {e}", file=sys.stderr)
        return 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if ok_run:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"concerns measure: logs kept in {work}", file=sys.stderr)


# ---------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------

# The engines' sides as the report groups them: the Paxos engine is everything rolepax
# wrote for it; the Raft engine is openraft plus the project's glue. `shared` (the WAL,
# the transports, the codec) serves both and is shown apart.
GROUPS = [
    ("paxos", "rolepax Paxos (roles, actors, driver, messages, storage)", ("paxos",)),
    ("openraft", "openraft 0.9.25 (library)", ("openraft",)),
    ("raft", "Raft glue (src/raft, messages/raft.rs)", ("raft",)),
    ("shared", "shared by both (WAL, transports, codec)", ("shared",)),
]

# The messages each engine sends between nodes: (engine, request, answer, where, concerns
# carried, note). `check` makes sure each named variant still exists in the source.
MESSAGES = [
    ("paxos", "Prepare{ballot, from_slot}", "Promise{ballot, decided_below, accepted runs, more_from} / Rejected{promised}", "proposer -> acceptor", "recovery", "the ballot is the elector's; decided_below is the snapshot floor"),
    ("paxos", "Pull{ballot, first, end}", "Pulled{values with ballots, more_from} / Rejected", "proposer -> acceptor", "recovery", "selective sync: each part from one holder"),
    ("paxos", "Accept{ballot, first_slot, values}", "Accepted{count} / Rejected{promised}", "proposer -> acceptor", "replication", "an empty Accept is a read barrier (reads); Rejected preempts the leader (election)"),
    ("paxos", "Decide{first_slot, values, commit}", "(none)", "proposer -> learner", "commit", "an empty Decide is a progress beacon: a lagging learner starts recovery"),
    ("paxos", "Fetch{from, to}", "Fetched{values} / SnapshotOffer{at}", "learner -> learner", "recovery", "an offer when the slots were compacted (snapshots)"),
    ("paxos", "SnapshotRead{at, offset}", "SnapshotChunk{at, offset, total, crc, file_crc, data}", "learner -> learner", "snapshots", "also a joining node's migration (membership)"),
    ("paxos", "Heartbeat{ballot}", "HeartbeatReply{ballot, highest}", "elector -> elector", "election", ""),
    ("paxos", "PreVote{ballot}", "PreVoteReply{ballot, granted}", "elector -> elector", "election", ""),
    ("paxos", "Propose{command}", "(answer through the log)", "any node -> leader's proposer", "glue", "client forwarding"),
    ("paxos", "ProposeStop{stop}", "(answer through the log)", "any node -> leader's proposer", "membership", ""),
    ("paxos", "ReadIndex{id}", "ReadIndexReply{id, index}", "any node -> leader's proposer -> asker's state machine", "reads", ""),
    ("raft", "AppendEntries{vote, prev_log_id, entries, leader_commit}", "Success / PartialSuccess(matching) / Conflict / HigherVote(vote)", "leader -> follower", "replication, commit, election, recovery", "entries: replication; leader_commit: commit; empty = heartbeat and vote: leader liveness (election); prev_log_id and Conflict: log matching (recovery)"),
    ("raft", "Vote{vote, last_log_id}", "VoteResponse{vote, vote_granted, last_log_id}", "candidate -> voter", "election", "last_log_id: the up-to-date check that spares Raft a recovery phase"),
    ("raft", "InstallSnapshot{vote, meta, offset, data, done}", "InstallSnapshotResponse{vote}", "leader -> lagging follower", "snapshots, recovery", "the vote also keeps the follower following (election)"),
    ("raft", "Forward (project)", "(the command's reply)", "follower -> leader", "glue", "client forwarding, src/messages/raft.rs"),
    ("raft", "ReadIndex (project)", "(the read index)", "follower -> leader", "reads", "src/messages/raft.rs"),
]
# Where each message's name must appear (file relative to the project root or openraft's src).
MESSAGE_SOURCES = {
    "paxos": ["src/messages/acceptor.rs", "src/messages/learner.rs", "src/messages/elector.rs", "src/messages/proposer.rs", "src/messages/state_machine.rs"],
    "raft": ["openraft:raft/message/append_entries.rs", "openraft:raft/message/vote.rs", "openraft:raft/message/install_snapshot.rs", "openraft:raft/message/mod.rs", "src/messages/raft.rs"],
}


def message_errors():
    errs = []
    src = openraft_src()
    for engine, files in MESSAGE_SOURCES.items():
        text = ""
        for f in files:
            if f.startswith("openraft:"):
                if not src:
                    continue
                path = os.path.join(src, f[len("openraft:"):])
            else:
                path = os.path.join(ROOT, f)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    text += fh.read()
            else:
                errs.append(f"message source {f} is gone")
        if engine == "raft" and not src:
            continue
        for m in MESSAGES:
            if m[0] != engine:
                continue
            for part in (m[1], m[2]):
                for name in re.findall(r"(?:^|/ )([A-Z]\w+)", part):
                    if not re.search(rf"\b{name}(Request|Response)?\b", text):
                        errs.append(f"message {name} ({engine}) not found in {', '.join(files)}")
    return errs


def summarise(res):
    """Per group: {concern: lines}, {file: {concern: lines}}."""
    by_group = {}
    for gid, _title, sides in GROUPS:
        files = defaultdict(lambda: defaultdict(int))
        for side, disp, _q, concern, n in res.rows:
            if side in sides:
                files[disp][concern] += n
        conc = defaultdict(int)
        for f in files.values():
            for c, n in f.items():
                conc[c] += n
        by_group[gid] = (conc, files)
    return by_group


def mixing(files, concerns=CORE):
    """Per concern: files it appears in, files holding 80 % of it, and the share of its
    lines in files whose largest concern is another one. Per side: the line-weighted
    purity of files (share of a file's lines in its largest concern)."""
    out = {}
    # A file's subject: its largest concern other than glue and other (the plumbing every
    # file has some of); a file of plumbing only has none.
    dominant = {}
    for f, c in files.items():
        subject = [(n, k) for k, n in c.items() if k not in ("glue", "other") and n]
        dominant[f] = max(subject)[1] if subject else None
    for con in concerns:
        per = sorted(((c.get(con, 0), f) for f, c in files.items() if c.get(con, 0)), reverse=True)
        tot = sum(n for n, _ in per)
        acc, k80 = 0, 0
        for n, _f in per:
            if acc >= 0.8 * tot:
                break
            acc += n
            k80 += 1
        foreign = sum(n for n, f in per if dominant[f] != con)
        out[con] = {"lines": tot, "files": len(per), "files80": k80, "foreign": (foreign / tot) if tot else 0.0, "top": per[:4]}
    all_lines = sum(sum(c.values()) for c in files.values())
    purity = sum(max(c.values()) for c in files.values() if c) / all_lines if all_lines else 0.0
    core_files = [f for f, c in files.items() if sum(1 for k in CORE if c.get(k, 0) >= max(5, 0.1 * sum(c.values()))) >= 2]
    return out, purity, core_files


def git(*args):
    import subprocess

    try:
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def read_measured(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    # the latest run of each (engine, clients)
    latest = {}
    for r in rows:
        latest[(r["engine"], r["clients"])] = r
    return [latest[k] for k in sorted(latest, key=lambda k: (k[0], int(k[1])))]


HARD = """\
### What was hard

*A draft from the code and its history (`git log -- src/roles src/raft`); the lead edits it.*

**Paxos, written as separate roles.**

* *Phase 1 with compaction and membership* (`src/roles/proposer/phase1.rs`, 500 code lines, the
  largest single concern file). A new leader must learn every slot that may have been chosen
  without pulling the whole log: acceptors report runs of slots per ballot
  (`src/roles/runs.rs`), the leader pulls each part once from one holder of its highest
  ballot (selective sync, commit 05ade77), a promise too large for a frame comes in parts
  (`more_from`), and slots below a durable snapshot are reported as a floor instead of values
  (`decided_below`, 993a96c). The StopSign adds a *recovery cut*: nothing after the lowest
  StopSign is proposed again unless a later slot was accepted at a higher ballot
  (`cut_at_stop_sign`, 7b9fb13). Raft has no counterpart of this file: its vote's up-to-date
  check means the leader already holds every committed entry.
* *Durable before revealed, for every role* (`src/driver.rs`). One driver carries each core's
  `Ready` out in order; a write is durable only once its sync *completed* (4e3f25a), later
  writes join the next sync (group commit). The simulator found the orderings that were
  wrong, not a reading of the code (`acceptor_skips_persist`, `state_machine_compacts_early`).
* *Snapshots crossing three roles* (learner, state machine, acceptor; f14d8ea, 9508616,
  3340c48): the state machine compacts only after its snapshot is durable, tells the acceptor
  and learner the floor, the learner serves and takes checksummed resumable chunks, and a node
  keeps serving the snapshot it just replaced so a transfer under load finishes. This is the
  concern that spans most files on the Paxos side (see the table above).
* *Linearizable reads* (`src/roles/proposer/reads.rs`, `src/roles/state_machine.rs`): a read
  index rides on the next Accept batch (or an empty one) so a deposed leader cannot answer;
  a step-down must answer every waiting read with `None` so it is asked again (ab7f51f,
  3267332); the planted `proposer_reads_without_quorum` is caught by the linearizability
  checker.
* *Exactly once*: a node proposes a request again after `retry_interval` without an answer
  (a lost message, a leader change), so the same command can be decided twice; the client
  table in the `StateMachine` core (`src/roles/state_machine.rs`, kept in the snapshot)
  applies it once and answers the second copy with the first reply.
* *Splitting by concern cost glue*: the proposer was split into phase 1, phase 2 and reads
  only later (c0957bb), and local messages (`src/messages/local.rs`: `Lead`, `StepDown`,
  `Learned`, `CatchUp`, `Compact`, `SnapshotDurable`, `Reconfigure`, ...) exist only because
  the roles are apart; see the glue row of the table.

**Raft, on openraft.** (From `src/raft/`'s module docs and the raft helper's commits.)

* *What the glue has to provide*: openraft's log storage (`RaftLogStorage`: append with a
  flush callback, truncate, purge, vote, committed; `src/raft/log_store.rs` on the WAL), its
  state machine (`RaftStateMachine`: apply, snapshot builder, install;
  `src/raft/state_machine.rs` over the `Application` trait) and its network
  (`RaftNetworkFactory` / `RaftNetwork`: append_entries, vote, install_snapshot;
  `src/raft/network.rs`, request/response matched by id over the project's transport); and
  what openraft leaves to its user (`src/raft/node.rs`): forwarding a follower's client write
  to the leader (`Forward`), a follower's linearizable read (`ReadIndex` to the leader, then
  wait until applied), the lock service's clock command, who initialises the cluster (the
  lowest node id, on an empty log).
* *Durability is a callback, and IO must stay in order*: openraft may reveal an entry only
  once `LogFlushed` is called, so the WAL's writer thread calls it after the fdatasync of
  its group, never before (the planted `raft_acks_before_durable` acknowledges on buffering
  and is caught by the chaos test's whole-cluster SIGKILL); a vote goes into the same buffer
  after the appends before it and `save_vote` returns only once synced, so a vote never
  overtakes an append.
* *openraft's quirks*: it wants `heartbeat < election_min < election_max` in whole
  milliseconds (the 0-5 ms range runs as heartbeat 1 ms, election 2-5 ms), and it uses the
  heartbeat interval as the time limit of an AppendEntries, so with a 1 ms heartbeat a
  follower's fsync makes many of them time out; a dead peer must be reported `Unreachable`
  (after a few timeouts) or openraft re-sends to it at every heartbeat; an oversized
  AppendEntries is refused with `PayloadTooLarge` and a hint. openraft does real work per
  message, so it runs on its own two-worker tokio runtime rather than the node's actix
  thread.
* *What the glue does not do*: commands are proposed at most once (no deduplication across
  a client's retries: an unknown outcome is reported as unavailable), membership change is
  not offered (501), and log entries are never read back from disk after the open (they
  stay in memory until a snapshot purges them).
* *Everything in one core*: election, replication, commit, snapshots and membership meet in
  openraft's `core/raft_core.rs` and `engine/engine_impl.rs` (see the tables above), and one
  RPC, AppendEntries, carries four concerns. The glue stays small because openraft hides
  this; it also means the glue cannot change how a concern is done (thrifty Accepts to a
  quorum only, a pre-vote, which openraft 0.9 lacks) without forking the library.
"""


def cmd_report(args):
    measured_path = MEASURED_CSV
    out_md = os.path.join(ROOT, "docs", "eval", "concerns.md")
    out_csv = os.path.join(ROOT, "docs", "eval", "concerns.csv")
    k = 0
    while k < len(args):
        if args[k] == "--measured" and k + 1 < len(args):
            measured_path = args[k + 1]
            k += 2
        else:
            print(f"concerns.py report: bad argument {args[k]!r}", file=sys.stderr)
            return 2
    rules, errors = load_table()
    if errors:
        for e in errors:
            print(f"concerns report: {e}", file=sys.stderr)
        return 1
    res, src = classify(rules)
    for e in res.errors:
        print(f"concerns report: warning: {e}", file=sys.stderr)
    groups = summarise(res)
    titles = {g: t for g, t, _ in GROUPS}
    L = []
    w = L.append
    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "src", "scripts/eval")
    w("## Separation of concerns\n")
    w(f"*Generated by `scripts/eval/concerns.sh` at commit {commit or '?'}{' (with uncommitted changes)' if dirty else ''}; "
      "the classification is the table `scripts/eval/concerns_table.txt` (one line per file or function, "
      "each with its reason), checked by `tests/concerns_table.rs`.*\n")
    w("The question (seed 000): Raft bundles election, replication and commit into one RPC and one "
      "module; does Paxos with its roles as separate actors keep its concerns apart, and what does that cost?\n")
    w("### Lines of code per concern\n")
    w("Code lines only: no blank lines, comments, doc comments, imports, `#[cfg(test)]` items or test files. "
      "A line belongs to the function (or `match` arm with a block body) around it, and that function's concern "
      "is the table's. openraft is counted as the library one would otherwise write "
      f"({'its source in cargo' + chr(39) + 's registry' if src else 'NOT FOUND: its columns are empty'}); "
      "code compiled out by the features rolepax uses (the v1 storage adaptor) is not counted. "
      "The Raft glue is whatever `src/raft` holds at this commit.\n")
    cols = ["paxos", "openraft", "raft", "shared"]
    w("| concern | " + " | ".join(titles[c] for c in cols) + " |")
    w("|---|" + "---:|" * len(cols))
    for con in CONCERNS:
        cells = []
        for g in cols:
            conc, files = groups[g]
            n = conc.get(con, 0)
            nf = sum(1 for f in files.values() if f.get(con, 0))
            cells.append(f"{n} ({nf} files)" if n else "")
        w(f"| {'**' + con + '**' if con in CORE else con} | " + " | ".join(cells) + " |")
    tot = []
    for g in cols:
        conc, files = groups[g]
        tot.append(f"**{sum(conc.values())}** ({len(files)} files)")
    w("| total | " + " | ".join(tot) + " |")
    core_tot = [sum(groups[g][0].get(c, 0) for c in CORE) for g in cols]
    w("| the six core concerns | " + " | ".join(str(n) for n in core_tot) + " |")
    w("")
    w("### Are the concerns apart? How many files each one spans\n")
    w("For each core concern: the files it has code in, how many of them hold 80 % of its lines, and the share "
      "of its lines that sit in files whose subject is another concern (*foreign share*; a file's subject is its "
      "largest concern other than glue and other; 0 % means the concern lives only in files of its own). The Raft side is openraft and the glue together.\n")
    both = {}
    for g, sides in (("paxos", ("paxos",)), ("raft", ("openraft", "raft"))):
        files = {}
        for gg in sides:
            files.update(groups[gg][1])
        both[g] = (files,) + mixing(files)
    w("| concern | Paxos: files (80 %) | Paxos: foreign share | Raft: files (80 %) | Raft: foreign share |")
    w("|---|---:|---:|---:|---:|")
    for con in CORE:
        a, b = both["paxos"][1][con], both["raft"][1][con]
        w(f"| {con} | {a['files']} ({a['files80']}) | {a['foreign']:.0%} | {b['files']} ({b['files80']}) | {b['foreign']:.0%} |")
    w("")
    avg = {g: (sum(both[g][1][c]["files"] for c in CORE) / len(CORE), sum(both[g][1][c]["files80"] for c in CORE) / len(CORE),
               sum(both[g][1][c]["foreign"] * both[g][1][c]["lines"] for c in CORE) / max(1, sum(both[g][1][c]["lines"] for c in CORE)))
           for g in both}
    w(f"In short: a core concern spans on average **{avg['paxos'][0]:.1f} files on the Paxos side and {avg['raft'][0]:.1f} on the Raft side** "
      f"({avg['paxos'][1]:.1f} and {avg['raft'][1]:.1f} files for 80 % of its lines); of all core-concern lines, "
      f"{avg['paxos'][2]:.0%} (Paxos) and {avg['raft'][2]:.0%} (Raft) sit in files whose subject is another concern.\n")
    for g, name in (("paxos", "Paxos"), ("raft", "Raft")):
        files, per, purity, mixed = both[g]
        w(f"*{name}*: {len(files)} files; line-weighted file purity (share of a file's lines in its largest concern) "
          f"**{purity:.0%}**; files with two or more core concerns of at least 10 % (and 5 lines) each: **{len(mixed)}**"
          + (": " + ", ".join(f"`{f}`" for f in sorted(mixed, key=lambda f: -sum(files[f].values()))[:8]) + (" ..." if len(mixed) > 8 else "") if mixed else "") + ".\n")
    w("Where each core concern lives (its largest files, code lines):\n")
    w("| concern | Paxos | Raft (openraft + glue) |")
    w("|---|---|---|")
    for con in CORE:
        cells = []
        for g in ("paxos", "raft"):
            top = both[g][1][con]["top"]
            cells.append(", ".join(f"`{f.replace('openraft/', 'or:')}` {n}" for n, f in top))
        w(f"| {con} | {cells[0]} | {cells[1]} |")
    w("")
    w("The files that mix most (core concerns of each file, code lines):\n")
    w("| side | file | lines | concerns |")
    w("|---|---|---:|---|")
    for g, name in (("paxos", "Paxos"), ("raft", "Raft")):
        files = both[g][0]
        ranked = sorted(files.items(), key=lambda kv: (-sum(1 for c in CORE if kv[1].get(c, 0) >= 5), -sum(kv[1].values())))[:6]
        for f, c in ranked:
            parts = ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]) if v)
            w(f"| {name} | `{f}` | {sum(c.values())} | {parts} |")
    w("")
    w("### Message types between nodes\n")
    w("| engine | request | answer | between | concerns carried | note |")
    w("|---|---|---|---|---|---|")
    for m in MESSAGES:
        answer = m[2] if m[2].startswith("(") else f"`{m[2]}`"
        w(f"| {m[0]} | `{m[1]}` | {answer} | {m[3]} | {m[4]} | {m[5]} |")
    npax = sum(1 for m in MESSAGES if m[0] == "paxos")
    nraft = sum(1 for m in MESSAGES if m[0] == "raft")
    w(f"\nPaxos: {npax} request kinds (21 message variants on the wire: `AcceptorRequest` 3, `AcceptorReply` 4, "
      "`LearnerMessage` 6, `ElectorMessage` 4, `ProposerMessage` 3, `StateMachineMessage` 1), each carrying one "
      f"concern (a note says where a second one rides along). Raft: {nraft} request kinds, three of them Raft's own RPCs, "
      "and AppendEntries alone carries four concerns. Paxos also has node-internal messages between roles "
      "(`src/messages/local.rs`, never on the wire) that Raft does not need.\n")
    w("### Messages and fsyncs per committed command (measured)\n")
    rows = read_measured(measured_path)
    if not rows:
        w("*Not measured yet: run `scripts/eval/concerns.sh` (without `--no-measure`).*\n")
    else:
        w("A 3-node cluster of each engine (release `rolepax-node`, one process per node, ephemeral ports, temporary "
          "data directories, default settings), `rolepax-bench --requests N --read-ratio 0` against the leader at 1 and 64 "
          "connections; every node's `/metrics` read before and after. **Messages** are `rolepax_transport_sent_total` "
          "summed over the nodes: envelopes the TCP transport wrote, one `PeerMessage` each (a Paxos `Accept` or `Decide` "
          "carries a batch of slots, a Raft `AppendEntries` a batch of entries; a role's message to its own node goes "
          "through its mailbox and is not counted). **fsyncs** are `rolepax_log_fsyncs_total` (every `fdatasync` of every "
          "log of the process) summed over the nodes. *Idle-corrected* subtracts the rate measured with no load "
          "(heartbeats) for the run's duration. *Per role or RPC*: for Paxos, the messages each role handled (local ones "
          "included), summed over the nodes; for Raft, the requests and responses each RPC kind sent (`/status`).\n")
        w("| engine | connections | puts | seconds | put/s | p50 ms | messages / put | idle-corrected | fsyncs / put | idle msgs/s | per role or RPC |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in rows:
            ok = float(r["ok"] or 0) or float(r["puts"])
            msgs = r["messages"]
            mp = f"{float(msgs) / ok:.2f}" if msgs not in ("", None) else "n/a"
            corr = f"{(float(msgs) - float(r['idle_messages_per_s'] or 0) * float(r['seconds'])) / ok:.2f}" if msgs not in ("", None) else "n/a"
            fp = f"{float(r['fsyncs']) / ok:.2f}" if r["fsyncs"] not in ("", None) else "n/a"
            p50 = r.get("p50_ms") or ""
            w(f"| {r['engine']} | {r['clients']} | {r['ok']} | {r['seconds']} | {r['throughput_rps']} | {p50} | {mp} | {corr} | {fp} | {r['idle_messages_per_s']} | {r['per_role']} |")
        w("")
        w("How to read it. Paxos with thrifty Accepts (to a quorum: the leader's acceptor and one other in 3 nodes) "
          "sends per batch 1 Accept + 1 Accepted + 2 Decides (the leader's own roles talk through mailboxes), and syncs "
          "the acceptor log of 2 nodes (the decided log is not synced per command). Raft sends each batch to both "
          "followers (2 AppendEntries + 2 responses) and syncs the log of all 3 nodes; the followers learn the commit "
          "index from the *next* AppendEntries, which under light load is one sent for that purpose (another 2 + 2). "
          "Both engines batch: with more connections more commands share one message and one fsync, so the per-put "
          "figures fall; *puts per fsync* below is how many commands one fdatasync covered on average over the cluster.\n")
        w("| engine | connections | puts per fsync | puts per message |")
        w("|---|---:|---:|---:|")
        for r in rows:
            ok = float(r["ok"] or 0) or float(r["puts"])
            pf = f"{ok / float(r['fsyncs']):.2f}" if r["fsyncs"] not in ("", None) and float(r["fsyncs"]) else "n/a"
            pm = f"{ok / float(r['messages']):.2f}" if r["messages"] not in ("", None) and float(r["messages"]) else "n/a"
            w(f"| {r['engine']} | {r['clients']} | {pf} | {pm} |")
        stamps = defaultdict(set)
        for r in rows:
            stamps[r.get("commit") or "?"].add(r.get("date") or "?")
        w("\nMeasured at " + "; ".join(f"commit {c} ({', '.join(sorted(d))})" for c, d in sorted(stamps.items()))
          + ", raw figures in `docs/eval/concerns-measured.csv`.\n")
    w(HARD)
    os.makedirs(os.path.dirname(out_md), exist_ok=True)
    with open(out_md, "w") as f:
        f.write("\n".join(L).rstrip("\n") + "\n")
    with open(out_csv, "w", newline="") as f:
        cw = csv.writer(f)
        cw.writerow(["side", "file", "concern", "lines"])
        agg = defaultdict(int)
        for side, disp, _q, concern, n in res.rows:
            agg[(side, disp, concern)] += n
        for (side, disp, concern), n in sorted(agg.items()):
            cw.writerow([side, disp, concern, n])
    print(f"concerns report: wrote {os.path.relpath(out_md, ROOT)} and {os.path.relpath(out_csv, ROOT)}", file=sys.stderr)
    return 0


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] == "check":
        return cmd_check()
    if argv[0] == "dump":
        return cmd_dump(argv[1] if len(argv) > 1 else "")
    if argv[0] == "report":
        return cmd_report(argv[1:])
    if argv[0] == "measure":
        return cmd_measure(argv[1:])
    print(f"concerns.py: unknown command {argv[0]!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

// MicroPython 1.27 (WebAssembly port, npm @micropython/micropython-webassembly-pyscript)
// in node, with a JS module `mp_bridge` whose calls are carried out by a Python host
// (tools/mp_cycle.py) over two inherited pipes: the card's transmit, the eIM network's
// post/read/close, a log line, heap block maps (dump), per-cycle records and the final
// result; for a board's own code (mp_cycle.py --board, tools/mp_board_driver.py) the
// modem UART (uart_open/uart_read/uart_write/uart_any/uart_close, carried out on the
// simulated modem's pty) and pin levels. Every call is synchronous (fs.writeSync / fs.readSync on blocking pipes), so
// ipa_core runs unchanged on top. Two calls stay in node: live() walks MicroPython's heap
// for its live size (see "live heap walk" below), capture() collects printed text.
//
//   node mp_bridge.mjs JOBDIR REQ_FD REP_FD
//
// JOBDIR/job.json: {"heapsize": N, "pystack": N, "main": "<python source>"}; every file
// under JOBDIR/fs/ is copied to the same path in the MicroPython filesystem (/lib/...).
// The main source defines `step()`; this script calls it from the top level until it
// answers False: in this port the GC only collects at such top-level entries (see
// tools/mp_cycle.py), so each step starts on a collected heap.
//
// Protocol: JSON lines. To the host {"op": ..., ...}; back {"r": value} or
// {"e": "<ErrorClass>", "m": "<message>"}. Bridge functions return strings to Python:
// the value, or "!<ErrorClass> <message>" for an error (the driver raises it).
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "fs";
import path from "path";

const [jobDir, reqFdArg, repFdArg] = process.argv.slice(2);
const REQ_FD = parseInt(reqFdArg, 10);
const REP_FD = parseInt(repFdArg, 10);
const MAX_LINE = 4 * 1024 * 1024; // one reply line at most (a read is far smaller)
const job = JSON.parse(fs.readFileSync(path.join(jobDir, "job.json"), "utf8"));

let pending = Buffer.alloc(0);

function readLine() {
  const chunk = Buffer.alloc(65536);
  for (;;) {
    const nl = pending.indexOf(10);
    if (nl >= 0) {
      const line = pending.subarray(0, nl).toString("utf8");
      pending = pending.subarray(nl + 1);
      return line;
    }
    if (pending.length > MAX_LINE) throw new Error("bridge: reply line over " + MAX_LINE + " bytes");
    let n;
    try {
      n = fs.readSync(REP_FD, chunk, 0, chunk.length, null);
    } catch (e) {
      if (e.code === "EAGAIN") continue; // a non-blocking pipe: try again
      throw e;
    }
    if (n === 0) throw new Error("bridge: the host closed the pipe");
    pending = Buffer.concat([pending, chunk.subarray(0, n)]);
  }
}

function writeAll(text) {
  const data = Buffer.from(text, "utf8");
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(REQ_FD, data, off, data.length - off);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e;
    }
  }
}

function call(req) {
  writeAll(JSON.stringify(req) + "\n");
  const rep = JSON.parse(readLine());
  if (rep.e !== undefined) return "!" + rep.e + " " + rep.m;
  return rep.r;
}

// ---- live heap walk -------------------------------------------------------------------
// This port never collects while Python runs, so gc.mem_alloc() inside a call counts garbage
// too. heapLive() computes what a collection at this point would keep: it marks from the
// roots MicroPython's own gc_collect_start() uses - the root pointer section of
// mp_state_ctx and the active Python stack (pystack) - through the heap, reading the
// allocation table (2 bits a block: 0 free, 1 head, 2 tail) like py/gc.c does: a word is a
// pointer when it is block-aligned inside a pool and lands on a head; a marked object's
// every word is scanned. Not scanned: the C stack (this port's top-level collection does
// not scan it either; a board's gc would, for a few temporaries). heapLocate() finds the
// structures from id(sys.modules) (a dict inside mp_state_ctx) and checks them against
// the block map that micropython.mem_info(1) printed; any mismatch disables the walk.
let M = null; // mp._module, set once MicroPython is loaded
const BLOCK = 16;
const u32 = (a) => M.getValue(a, "i32") >>> 0;
const u8 = (a) => M.getValue(a, "i8") & 0xff;
let lastMap = null; // [{pool, cells}] from the last heap dump
let layout = null; // {P: pystack fields, S: first area struct}

function parseMap(text) {
  const areas = [];
  let cur = null;
  for (let line of text.split("\n")) {
    line = line.replace(/\r$/, "");
    if (line.startsWith("GC memory layout; from ")) {
      cur = { pool: parseInt(line.slice(23).replace(/:$/, ""), 16), cells: [] };
      areas.push(cur);
      continue;
    }
    const free = /^\s*\((\d+) lines all free\)$/.exec(line);
    if (cur && free) {
      for (let i = parseInt(free[1], 10) * 64; i > 0; i--) cur.cells.push(".");
      continue;
    }
    const m = /^([0-9a-f]{8}): (.*)$/.exec(line);
    if (!cur || !m) continue;
    const at = parseInt(m[1], 16) / BLOCK;
    while (cur.cells.length < at) cur.cells.push(".");
    for (const c of m[2]) cur.cells.push(c);
  }
  return areas;
}

function kindOf(atb, b) {
  return (u8(atb + (b >> 2)) >> ((b & 3) * 2)) & 3;
}

function areaAt(a) {
  // py/mpstate.h mp_state_mem_area_t with split heap and finaliser (1.27): next,
  // gc_alloc_table_start, gc_alloc_table_byte_len, gc_finaliser_table_start, gc_pool_start,
  // gc_pool_end, gc_last_free_atb_index, gc_last_used_block
  const blocks = u32(a + 8) * 4;
  return { next: u32(a), atb: u32(a + 4), blocks: blocks, pool: u32(a + 16), end: u32(a + 20) };
}

function heapLocate(hint, pyUse, pyBytes) {
  if (!lastMap || !lastMap.length) return "no heap dump to check against";
  let P = null;
  let F = null;
  const first = lastMap[0];
  for (let a = hint - 8192; a < hint + 8192; a += 4) {
    const v = u32(a);
    if (P === null && v > 0 && u32(a + 4) - v === pyBytes && u32(a + 8) - v === pyUse) P = a;
    if (F === null && v === first.pool && u32(a + 4) === first.pool + first.cells.length * BLOCK) F = a;
  }
  if (P === null) return "pystack pointers not found near mp_state_ctx";
  if (F === null) return "the first heap area not found near mp_state_ctx";
  const S = F - 16;
  if (!(S > P && S - P < 16384)) return "unexpected layout: area at " + S + ", pystack fields at " + P;
  let a = S;
  for (let k = 0; k < lastMap.length; k++) {
    if (!a) return "area list ends after " + k + " of " + lastMap.length;
    const ar = areaAt(a);
    const want = lastMap[k];
    if (ar.pool !== want.pool || ar.blocks !== want.cells.length || ar.end !== ar.pool + ar.blocks * BLOCK)
      return "area " + k + " does not match the block map";
    // what the map shows allocated must be there; a free block may have been taken since
    let heads = 0;
    for (let b = 0; b < ar.blocks; b++) {
      const c = want.cells[b];
      if (c === ".") continue;
      if (kindOf(ar.atb, b) !== (c === "=" ? 2 : 1))
        return "allocation table of area " + k + " differs at block " + b;
      if (c !== "=") heads++;
    }
    if (k === 0 && heads < 16) return "too few objects in the block map to trust the match";
    a = ar.next;
  }
  layout = { P: P, S: S };
  return "";
}

function heapLive() {
  if (layout === null) return -1;
  const areas = [];
  for (let a = layout.S, n = 0; a && n < 256; n++) {
    const ar = areaAt(a);
    areas.push(ar);
    a = ar.next;
  }
  const marked = new Set();
  const todo = [];
  const consider = (p) => {
    if (p & (BLOCK - 1)) return;
    for (const ar of areas) {
      if (p >= ar.pool && p < ar.end) {
        const b = (p - ar.pool) / BLOCK;
        if (!marked.has(p) && kindOf(ar.atb, b) === 1) {
          marked.add(p);
          todo.push([ar, b]);
        }
        return;
      }
    }
  };
  const P = layout.P;
  for (let w = P + 12; w < layout.S; w += 4) consider(u32(w)); // root pointer section
  const pyEnd = u32(P + 8);
  for (let w = u32(P); w < pyEnd; w += 4) consider(u32(w)); // active pystack
  let total = 0;
  while (todo.length) {
    const [ar, b] = todo.pop();
    let n = 1;
    while (b + n < ar.blocks && kindOf(ar.atb, b + n) === 2) n++;
    total += n * BLOCK;
    const start = ar.pool + b * BLOCK;
    for (let w = start; w < start + n * BLOCK; w += 4) consider(u32(w));
  }
  return total;
}

// stdout capture, so the driver can read micropython.mem_info()'s text
let capture = null;
const emit = (line) => {
  if (capture !== null) capture.push(line);
  else process.stdout.write(line + "\n");
};

const mp = await loadMicroPython({
  heapsize: job.heapsize,
  pystack: job.pystack,
  stdout: emit,
  stderr: (line) => process.stderr.write(line + "\n"),
  linebuffer: true,
});

M = mp._module;

mp.registerJsModule("mp_bridge", {
  transmit: (apduHex) => call({ op: "transmit", apdu: apduHex }),
  post: (p, ctype, bodyHex, headersJson) =>
    call({ op: "post", path: p, ctype: ctype, body: bodyHex, headers: headersJson }),
  read: (token, n) => call({ op: "read", token: token, n: n }),
  close: (token) => call({ op: "close", token: token }),
  // the board's modem UART (machine.UART stand-in) and its pins (machine.Pin stand-in)
  uart_open: (cfgJson) => call({ op: "uart_open", cfg: cfgJson }),
  uart_read: (n, timeoutMs, charMs) =>
    call({ op: "uart_read", n: n, timeout: timeoutMs, timeout_char: charMs }),
  uart_write: (dataHex) => call({ op: "uart_write", data: dataHex }),
  uart_any: () => call({ op: "uart_any" }),
  uart_close: () => call({ op: "uart_close" }),
  pin: (id, level) => call({ op: "pin", pin: id, level: level }),
  log: (line) => call({ op: "log", line: line }),
  record: (text) => call({ op: "record", data: text }),
  result: (text) => call({ op: "result", data: text }),
  // the captured text goes to the host (heap dumps: no copy on the MicroPython heap)
  dump: (tag) => {
    const text = (capture || []).join("\n");
    capture = null;
    lastMap = parseMap(text);
    return call({ op: "dump", tag: tag, text: text });
  },
  locate: (hint, pyUse) => heapLocate(hint, pyUse, job.pystack * 4),
  live: () => heapLive(),
  capture: (on) => {
    if (on) {
      capture = [];
      return "";
    }
    const text = (capture || []).join("\n");
    capture = null;
    return text;
  },
});

function copyTree(src, dst) {
  for (const ent of fs.readdirSync(src, { withFileTypes: true })) {
    const s = path.join(src, ent.name);
    const d = dst + "/" + ent.name;
    if (ent.isDirectory()) {
      try { mp.FS.mkdir(d); } catch (e) { /* exists */ }
      copyTree(s, d);
    } else {
      mp.FS.writeFile(d, fs.readFileSync(s));
    }
  }
}
copyTree(path.join(jobDir, "fs"), "");

let code = 0;
try {
  mp.runPython(job.main);
  const step = mp.globals.get("step");
  // each call enters MicroPython from the top level: the deferred GC runs first
  while (step()) { /* next step */ }
  code = mp.globals.get("exit_code")();
} catch (e) {
  process.stderr.write("MicroPython driver failed: " + e + "\n");
  code = 2;
}
process.exit(code);

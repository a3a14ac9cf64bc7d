// Runs Python test modules under real MicroPython (WebAssembly port, npm
// @micropython/micropython-webassembly-pyscript) in node. Driven by
// tools/mp_test.py, which passes a JSON job on stdin:
//   {"files": {"/lib/ipa_core/tlv.py": "<source>", ...}, "path": [...],
//    "driver": "<python source>", "heapsize": N}
// The driver prints the results; the exit code is what the driver sets
// through the global name `_exit_code`.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const job = JSON.parse(input);

const mp = await loadMicroPython({
  heapsize: job.heapsize,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
  linebuffer: true,
});

function mkdirs(path) {
  let cur = "";
  for (const part of path.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}
for (const [path, text] of Object.entries(job.files)) {
  mkdirs(path.substring(0, path.lastIndexOf("/")));
  mp.FS.writeFile(path, text);
}
let code = 1;
try {
  mp.runPython(job.driver);
  code = mp.globals.get("_exit_code");
} catch (e) {
  process.stderr.write("MicroPython driver failed: " + e + "\n");
  code = 2;
}
process.exit(code);

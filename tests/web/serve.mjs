// Starts `zeroqc serve --port 0 ...` for a node test and learns its port from stdout.
import { spawn } from 'node:child_process';

// Returns { server, port, exited }; `stderr`: 'inherit', or 'pipe' to read server.stderr.
export async function startServe(bin, args, stderr = 'inherit') {
  const server = spawn(bin, ['serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', stderr] });
  const exited = new Promise((resolve) => server.on('exit', resolve));
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    server.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/port (\d+)/);
      if (m) resolve(Number(m[1]));
    });
    server.on('exit', (code) => reject(new Error('zeroqc serve exited with ' + code)));
  });
  return { server, port, exited };
}

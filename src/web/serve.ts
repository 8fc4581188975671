// `weakseg serve DIR`: a static file server for the exported web page on localhost. It sends the cross-origin
// isolation headers (COOP/COEP) so that onnxruntime-web may use WebAssembly threads, and the right types for .mjs
// and .wasm. Node's http module is enough for this; a framework would add nothing.
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
};

export interface ServeOptions {
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1 (this machine only). */
  host?: string;
}

export interface RunningServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Serves `dir` until closed. A missing directory or index.html is an error naming it. */
export async function serveDirectory(dir: string, options: ServeOptions = {}): Promise<RunningServer> {
  const root = resolve(dir);
  try {
    statSync(join(root, 'index.html'));
  } catch {
    throw new Error(`${join(root, 'index.html')} does not exist; write the page with \`weakseg export -r RUN --web ${dir}\``);
  }
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    const file = resolve(root, `.${path.endsWith('/') ? `${path}index.html` : path}`);
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cache-Control': 'no-cache',
    };
    let size = -1;
    if (file === root || file.startsWith(root + sep)) {
      try {
        const st = statSync(file);
        if (st.isFile()) size = st.size;
      } catch {
        // not found below
      }
    }
    if (size < 0 || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(size < 0 ? 404 : 405, { ...headers, 'Content-Type': 'text/plain' }).end(size < 0 ? 'not found\n' : 'method not allowed\n');
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream', 'Content-Length': size });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) => fail(new Error(`cannot listen on ${host}:${options.port ?? 8000} (${e.code ?? e.message})`)));
    server.listen(options.port ?? 8000, host, ok);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    server,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

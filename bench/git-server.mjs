// A git server for bench/build.sh: `git http-backend` for the repositories under argv[2], on
// loopback port argv[3] (smart HTTP, what a build's shallow clone needs).
import { createServer } from "node:http";
import { spawn } from "node:child_process";

const [root, port] = process.argv.slice(2);
createServer((req, res) => {
  const [path, query = ""] = req.url.split("?");
  const cgi = spawn("git", ["http-backend"], { env: { ...process.env, GIT_PROJECT_ROOT: root, GIT_HTTP_EXPORT_ALL: "1",
    PATH_INFO: path, QUERY_STRING: query, REQUEST_METHOD: req.method, CONTENT_TYPE: req.headers["content-type"] || "",
    GIT_PROTOCOL: req.headers["git-protocol"] || "" } });
  req.pipe(cgi.stdin);
  const chunks = [];
  cgi.stdout.on("data", c => chunks.push(c));
  cgi.on("close", () => {
    const out = Buffer.concat(chunks);
    const split = out.indexOf("\r\n\r\n");
    let status = 200;
    for (const line of out.subarray(0, split).toString().split("\r\n")) {
      const i = line.indexOf(":");
      if (i < 0) continue;
      const [k, v] = [line.slice(0, i), line.slice(i + 1).trim()];
      if (k.toLowerCase() === "status") status = parseInt(v, 10);
      else res.setHeader(k, v);
    }
    res.writeHead(status);
    res.end(out.subarray(split + 4));
  });
}).listen(Number(port), "127.0.0.1");

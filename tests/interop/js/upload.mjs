// A tus-js-client upload that is cut off midway (its request aborted, as when the
// network drops), then resumed from the server's offset by a new Upload.
// node upload.mjs ENDPOINT FILE → one JSON line: {url, offsetAfterCut, download}
// node upload.mjs ENDPOINT FILE parallel → the file in two parallel partial uploads,
// concatenated by the server: {download}
import fs from "node:fs";
import * as tus from "tus-js-client";

const [endpoint, path, mode] = process.argv.slice(2);
const data = fs.readFileSync(path);
const options = {
  chunkSize: 256 * 1024,
  metadata: { filename: "из-node.bin", filetype: "application/octet-stream" },
  retryDelays: [0, 500, 1000],
};

function firstHalf() {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(data, {
      ...options,
      endpoint,
      onError: reject,
      onSuccess: () => reject(new Error("finished before it could be cut off")),
      onProgress: (sent, total) => {
        if (sent >= total * 0.4 && upload.url) {
          upload.abort().then(() => resolve(upload.url), reject);
        }
      },
    });
    upload.start();
  });
}

function rest(uploadUrl) {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(data, {
      ...options,
      uploadUrl,
      onError: reject,
      onSuccess: (payload) => resolve(payload.lastResponse.getHeader("Satchel-Download")),
    });
    upload.start();
  });
}

if (mode === "parallel") {
  const download = await new Promise((resolve, reject) => {
    new tus.Upload(data, {
      ...options,
      endpoint,
      parallelUploads: 2,
      onError: reject,
      onSuccess: (payload) => resolve(payload.lastResponse.getHeader("Satchel-Download")),
    }).start();
  });
  console.log(JSON.stringify({ download }));
  process.exit(0);
}

const url = await firstHalf();
const head = await fetch(url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" } });
const offsetAfterCut = Number(head.headers.get("Upload-Offset"));
const download = await rest(url);
console.log(JSON.stringify({ url, offsetAfterCut, download }));

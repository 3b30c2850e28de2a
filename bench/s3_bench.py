"""S3 benchmark: Satchel with --storage s3:// against the S3 server alone, in one run.

- upload: `curl -T` of a file to Satchel, which streams it into a multipart upload,
  against boto3 alone making a multipart upload of the same bytes (the same part size,
  one part at a time, read from the same file);
- download: curl from Satchel against curl fetching the same object from the S3 server
  directly (SigV4, the same client);
- Satchel's peak RSS meanwhile;
- the archive of a folder of 320 objects of 1–8 MiB in the bucket (`--photos s3://`),
  cold (a fresh CRC cache: no stored checksums, so every member is read for its CRC,
  then sent) and warm, against curl fetching the same bytes as one object;
- 200 downloads at once of one stored file through nginx round-robin, in front of one
  instance and of two (one PostgreSQL, one bucket);
- the client libraries we chose between (boto3, obstore): multipart PUT and GETs of
  the same object, where obstore is installed (`pip install obstore`).

Subjects alternate (A B A B); Markdown on stdout; figures in bench/RESULTS.md. Needs an
S3 server: by default it starts the tests' SeaweedFS (.ci/s3-server-setup.sh).

    python bench/s3_bench.py [--rounds 3] [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archive_bench import ROOT, WORK, Run, free_port, usage, warm_cache  # noqa: E402
from files_bench import make_file, start_satchel, upload  # noqa: E402
from throttle_bench import parallel  # noqa: E402

BUCKET = "satchel-bench"
PART = 8 * 2**20


def s3_environment() -> None:
    """Start the tests' S3 server with the bench's bucket; its settings into os.environ."""
    script = ROOT / ".ci" / "s3-server-setup.sh"
    env = {**os.environ, "S3_BUCKETS": BUCKET}
    subprocess.run(["bash", str(script), "start"], env=env, check=True, capture_output=True)
    printed = subprocess.run(
        ["bash", str(script), "env"], env=env, check=True, capture_output=True, text=True
    ).stdout
    for line in printed.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        os.environ[name] = value


def client() -> Any:
    from satchel.storage.s3 import connect

    return connect(None)


def boto3_upload(s3: Any, path: Path, key: str) -> Run:
    """The library alone: a multipart upload of the file, part by part."""
    warm_cache([path])
    started = time.perf_counter()
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    parts = []
    with path.open("rb") as f:
        while block := f.read(PART):
            number = len(parts) + 1
            answer = s3.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=block
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    seconds = time.perf_counter() - started
    return Run("boto3 multipart upload alone", path.stat().st_size, seconds, 0.0, 0.0, 0)


def curl_get(subject: str, url: str, *extra: str) -> Run:
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "--max-time", "300", *extra,
         "-w", "%{size_download} %{time_total} %{time_starttransfer} %{http_code}", url],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if out[3] not in ("200", "206"):
        raise RuntimeError(f"{subject}: HTTP {out[3]}")
    return Run(subject, int(out[0]), float(out[1]), float(out[2]), 0.0, 0)


def s3_curl(key: str) -> Run:
    user = f"{os.environ['AWS_ACCESS_KEY_ID']}:{os.environ['AWS_SECRET_ACCESS_KEY']}"
    sigv4 = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", user]
    url = f"{os.environ['AWS_ENDPOINT_URL_S3']}/{BUCKET}/{key}"
    return curl_get("curl from S3 directly", url, *sigv4)


def seed_album(s3: Any, count: int) -> int:
    """``count`` objects of 1–8 MiB under album/ (no stored checksums: the worst case),
    and the same bytes as one object, album.bin; the total size."""
    import random

    rng = random.Random(18)
    sizes = [rng.randint(2**20, 8 * 2**20) for _ in range(count)]
    listed = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="photos/album/")
    have = sum(len(page.get("Contents", [])) for page in listed)
    whole_there = s3.list_objects_v2(Bucket=BUCKET, Prefix="album.bin").get("KeyCount", 0)
    if have != count or not whole_there:
        whole = WORK / "album.bin"
        with whole.open("wb") as out:
            for n, size in enumerate(sizes, 1):
                data = rng.randbytes(size)
                s3.put_object(Bucket=BUCKET, Key=f"photos/album/{n:04d}.jpg", Body=data)
                out.write(data)
        s3.upload_file(str(whole), BUCKET, "album.bin")
        whole.unlink()
    return sum(sizes)


def archives(s3: Any, rounds: int, count: int) -> list[Run]:
    total = seed_album(s3, count)
    runs: list[Run] = []
    for n in range(rounds):
        runs.append(s3_curl("album.bin"))
        server = start_satchel(
            WORK / f"s3-archive-{n}-{time.time_ns()}", "--photos", f"s3://{BUCKET}/photos"
        )
        try:
            for subject in ("satchel archive of the S3 folder, cold",
                            "satchel archive of the S3 folder, warm"):  # fmt: skip
                with usage(server) as used:
                    run = curl_get(subject, f"http://127.0.0.1:{server.port}/archive/album/")
                run.peak_rss, run.cpu = used.peak_rss, used.cpu
                if run.bytes <= total:
                    raise RuntimeError(f"{subject}: {run.bytes} bytes for {total} of members")
                runs.append(run)
        finally:
            server.stop()
    return runs


def instances_bench(rounds: int, count: int = 200, size_mb: int = 4) -> list[Run]:
    """``count`` downloads at once of one stored file through nginx round-robin, in
    front of one instance, then two (one PostgreSQL, one bucket; each its own data)."""
    import shutil

    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-c",
         "DROP DATABASE IF EXISTS satchel_bench", "-c", "CREATE DATABASE satchel_bench"],
        check=True, capture_output=True,
    )  # fmt: skip
    db = "postgresql+asyncpg://postgres@127.0.0.1:5432/satchel_bench"
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    storage = f"s3://{BUCKET}/instances"
    extra = ("--db", db, "--storage", storage, "--no-access-log")
    servers = [start_satchel(WORK / f"instance-{i}", *extra) for i in range(2)]
    runs: list[Run] = []
    try:
        path = WORK / "instances.bin"
        path.write_bytes(os.urandom(size_mb * 2**20))
        _, file_id = upload(servers[0], path)
        for _ in range(rounds):
            for n in (1, 2):
                port = free_port()
                conf = WORK / "nginx-instances.conf"
                upstream = "".join(f"server 127.0.0.1:{s.port};" for s in servers[:n])
                conf.write_text(
                    f"daemon off; worker_processes 1; pid {WORK}/nginx-i.pid;\n"
                    f"error_log {WORK}/nginx-i.log; events {{ worker_connections 1024; }}\n"
                    f"http {{ access_log off; upstream s {{ {upstream} keepalive 64; }}\n"
                    f"  proxy_temp_path {WORK}/nginx-tmp; client_body_temp_path {WORK}/nginx-tmp;\n"
                    f"  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://s;\n"
                    '    proxy_http_version 1.1; proxy_set_header Connection "";\n'
                    "    proxy_buffering off; } } }\n"
                )
                (WORK / "nginx-tmp").mkdir(exist_ok=True)
                balancer = subprocess.Popen([nginx, "-c", str(conf), "-e", str(WORK / "e.log")])
                try:
                    time.sleep(0.5)
                    url = f"http://127.0.0.1:{port}/files/{file_id}/"
                    with usage(servers[0]) as used:
                        rows, seconds = parallel([url] * count)
                    done = sum(t.size for t in rows if t.status == 200)
                    if done != count * path.stat().st_size:
                        raise RuntimeError(f"{n} instances: {done} bytes of {count} downloads")
                finally:
                    balancer.terminate()
                    balancer.wait(10)
                subject = f"{count} downloads, {n} instance{'s' * (n > 1)} behind nginx"
                runs.append(Run(subject, done, seconds, 0.0, used.cpu, used.peak_rss))
    finally:
        for server in servers:
            server.stop()
    return runs


def libraries(s3: Any, size: int, rounds: int) -> list[Run]:
    """boto3 and obstore, each writing and reading the same bytes the same way."""
    try:
        import obstore
        from obstore.store import S3Store
    except ImportError:
        print("obstore is not installed: the library comparison is left out\n")
        return []
    store = S3Store(
        BUCKET, endpoint=os.environ["AWS_ENDPOINT_URL_S3"], region="us-east-1",
        access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        client_options={"allow_http": True},
    )  # fmt: skip
    block = os.urandom(PART)
    count = size // PART

    def boto3_put() -> None:
        upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="lib/boto3")["UploadId"]
        parts = [
            {"PartNumber": n, "ETag": s3.upload_part(
                Bucket=BUCKET, Key="lib/boto3", UploadId=upload_id, PartNumber=n, Body=block
            )["ETag"]}
            for n in range(1, count + 1)
        ]  # fmt: skip
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key="lib/boto3", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    def obstore_put() -> None:
        obstore.put(store, "lib/obstore", iter([block] * count), chunk_size=PART,
                    max_concurrency=1)  # fmt: skip

    def boto3_get() -> None:
        body = s3.get_object(Bucket=BUCKET, Key="lib/boto3")["Body"]
        while body.read(2**20):
            pass

    def obstore_get() -> None:
        for _ in obstore.get(store, "lib/obstore").stream(min_chunk_size=2**20):
            pass

    def boto3_ranges() -> None:
        for at in range(0, count * PART, PART):
            s3.get_object(Bucket=BUCKET, Key="lib/boto3", Range=f"bytes={at}-{at + PART - 1}")[
                "Body"
            ].read()

    def obstore_ranges() -> None:
        for at in range(0, count * PART, PART):
            obstore.get_range(store, "lib/obstore", start=at, length=PART)

    runs = []
    subjects = [
        ("boto3 multipart PUT", boto3_put), ("obstore multipart PUT", obstore_put),
        ("boto3 GET, streamed", boto3_get), ("obstore GET, streamed", obstore_get),
        ("boto3 ranged GETs of 8 MiB", boto3_ranges),
        ("obstore ranged GETs of 8 MiB", obstore_ranges),
    ]  # fmt: skip
    for _ in range(rounds):
        for name, run in subjects:
            started = time.perf_counter()
            run()
            runs.append(Run(name, count * PART, time.perf_counter() - started, 0.0, 0.0, 0))
    return runs


def table(runs: list[Run], pairs: list[tuple[str, str]]) -> None:
    print("| subject | runs | GB/s median (range) | × baseline | server CPU s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for subject, baseline in pairs:
        rs = [r for r in runs if r.subject == subject]
        if not rs:
            continue
        gbps = statistics.median(r.gbps for r in rs)
        spread = f"{min(r.gbps for r in rs):.2f}–{max(r.gbps for r in rs):.2f}"
        base = [r.gbps for r in runs if r.subject == baseline]
        ratio = f"{gbps / statistics.median(base):.2f}" if base and baseline != subject else "–"
        rss = max(r.peak_rss for r in rs)
        rss_text = f"{rss / 2**20:.0f}" if rss else "–"
        cpu = statistics.median(r.cpu for r in rs)
        cpu_text = f"{cpu:.2f}" if cpu else "–"
        print(
            f"| {subject} | {len(rs)} | {gbps:.3f} ({spread}) | {ratio} | {cpu_text} | {rss_text} |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--album-files", type=int, default=320)
    parser.add_argument("--skip-files", action="store_true", help="only the archives")
    args = parser.parse_args()
    s3_environment()
    s3 = client()
    path = make_file(args.size_mb)
    data = WORK / "s3-data"
    server = start_satchel(data, "--storage", f"s3://{BUCKET}/satchel")
    runs: list[Run] = []
    try:
        for _ in range(0 if args.skip_files else args.rounds):
            runs.append(boto3_upload(s3, path, "direct/file.bin"))
            run, file_id = upload(server, path)
            run.subject = "satchel upload to S3, curl -T"
            runs.append(run)
            runs.append(s3_curl("direct/file.bin"))
            with usage(server) as used:
                down = curl_get(
                    "satchel download from S3, curl",
                    f"http://127.0.0.1:{server.port}/files/{file_id}/",
                )
            down.peak_rss, down.cpu = used.peak_rss, used.cpu
            runs.append(down)
    finally:
        server.stop()
    print(f"\n{args.size_mb} MiB, {args.rounds} rounds, subjects alternated\n")
    table(runs, [
        ("boto3 multipart upload alone", "boto3 multipart upload alone"),
        ("satchel upload to S3, curl -T", "boto3 multipart upload alone"),
        ("curl from S3 directly", "curl from S3 directly"),
        ("satchel download from S3, curl", "curl from S3 directly"),
    ])  # fmt: skip
    album = archives(s3, args.rounds, args.album_files)
    print(
        f"Archive of {args.album_files} objects of 1–8 MiB, against one object of the same bytes:\n"
    )
    table(album, [
        ("curl from S3 directly", "curl from S3 directly"),
        ("satchel archive of the S3 folder, cold", "curl from S3 directly"),
        ("satchel archive of the S3 folder, warm", "curl from S3 directly"),
    ])  # fmt: skip
    spread = instances_bench(args.rounds)
    print("One stored file on S3, downloaded by 200 at once through nginx round-robin:\n")
    one, two = (f"200 downloads, {n} behind nginx" for n in ("1 instance", "2 instances"))
    table(spread, [(one, one), (two, one)])
    lib = libraries(s3, min(args.size_mb, 512) * 2**20, args.rounds)
    if lib:
        print("Client libraries, the same bytes each (one connection, parts one at a time):\n")
        table(lib, [
            ("boto3 multipart PUT", "boto3 multipart PUT"),
            ("obstore multipart PUT", "boto3 multipart PUT"),
            ("boto3 GET, streamed", "boto3 GET, streamed"),
            ("obstore GET, streamed", "boto3 GET, streamed"),
            ("boto3 ranged GETs of 8 MiB", "boto3 ranged GETs of 8 MiB"),
            ("obstore ranged GETs of 8 MiB", "boto3 ranged GETs of 8 MiB"),
        ])  # fmt: skip


if __name__ == "__main__":
    main()

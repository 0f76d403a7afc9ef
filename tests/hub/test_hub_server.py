"""Drive the REAL `huggingface_hub` / `datasets` clients (in subprocesses) against `LocalHub`.

Every client call runs in a fresh interpreter whose environment comes from `hub_env`, because the
client reads `HF_ENDPOINT` & co. at import time. The subprocesses print one JSON line that the test
asserts on; the server side is checked through `LocalHub`'s inspection helpers.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import hub_fixtures  # tests/ is on sys.path (its conftest.py)
import pytest
from hub_server import LocalHub, git_hash, hub_file_url

hub_env = hub_fixtures.hub_env
run_hub_python = hub_fixtures.run_hub_python
HUB_TOKEN, OTHER_TOKEN, READ_TOKEN = hub_fixtures.HUB_TOKEN, hub_fixtures.OTHER_TOKEN, hub_fixtures.READ_TOKEN
HUB_ORG = hub_fixtures.HUB_ORG


def _last_json(stdout: str) -> dict:
    """The subprocesses print their result as the last line of stdout, in JSON."""
    return json.loads(stdout.strip().splitlines()[-1])


def _request(url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    """One raw HTTP request (no redirect following) -> (status, headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# repo creation and auth
# --------------------------------------------------------------------------------------------


def test_create_repo_whoami_and_namespaces(local_hub: LocalHub, tmp_path: Path) -> None:
    code = f"""
    import json
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    api = HfApi()
    out = {{"whoami": api.whoami()["name"]}}
    out["url"] = str(api.create_repo("user/model-a"))
    out["url_again"] = str(api.create_repo("user/model-a", exist_ok=True))
    try:
        api.create_repo("user/model-a")
    except HfHubHTTPError as e:
        out["dup_status"] = e.response.status_code
    out["ds_url"] = str(api.create_repo("ds-a", repo_type="dataset", private=True))
    out["org_url"] = str(api.create_repo("{HUB_ORG}/shared"))
    try:
        api.create_repo("other/not-mine")
    except HfHubHTTPError as e:
        out["foreign_status"] = e.response.status_code
    info = api.dataset_info("user/ds-a")
    out["ds_private"], out["ds_sha"] = info.private, info.sha
    out["ds_files"] = [s.rfilename for s in info.siblings]
    print(json.dumps(out))
    """
    out = _last_json(run_hub_python(code, hub_env(local_hub, tmp_path)).stdout)
    ep = local_hub.endpoint
    assert out["whoami"] == "user"
    assert out["url"] == out["url_again"] == f"{ep}/user/model-a"
    assert out["dup_status"] == 409
    assert out["ds_url"] == f"{ep}/datasets/user/ds-a"
    assert out["org_url"] == f"{ep}/{HUB_ORG}/shared"
    assert out["foreign_status"] == 403
    assert out["ds_private"] is True
    assert out["ds_files"] == [".gitattributes"]  # the initial commit makes `main` exist
    assert out["ds_sha"] == local_hub.branches("user/ds-a", "dataset")["main"]
    assert not local_hub.repo_exists("other/not-mine")


def test_bad_credentials_are_rejected_before_anything_is_written(local_hub: LocalHub, tmp_path: Path) -> None:
    local_hub.create_repo("user/model-b")
    before = local_hub.commits("user/model-b")
    code = f"""
    import json
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    def attempt(token):
        api = HfApi() if token == "env" else HfApi(token=token)
        try:
            api.upload_file(path_or_fileobj=b"\\0binary" * 100, path_in_repo="w.safetensors", repo_id="user/model-b")
        except HfHubHTTPError as e:
            return [type(e).__name__, e.response.status_code, str(e)]
        return "uploaded"

    out = {{
        "env_wrong_token": attempt("env"),  # HF_TOKEN=hf_wrong in the environment
        "anonymous": attempt(False),
        "read_only": attempt("{READ_TOKEN}"),
        "other_user": attempt("{OTHER_TOKEN}"),
    }}
    try:
        HfApi().whoami()
    except HfHubHTTPError as e:
        out["whoami"] = [e.response.status_code, str(e)]
    print(json.dumps(out))
    """
    env = hub_env(local_hub, tmp_path, token="hf_wrong")
    out = _last_json(run_hub_python(code, env).stdout)

    name, status, message = out["env_wrong_token"]
    assert (name, status) == ("HfHubHTTPError", 401)
    assert "Invalid credentials in Authorization header" in message
    assert out["anonymous"][1] == 401
    assert out["read_only"][1] == 403
    assert out["other_user"][1] == 403
    assert out["whoami"][0] == 401 and "Invalid user token" in out["whoami"][1]
    # Nothing reached storage: same history, no LFS batch answered, no CDN upload.
    assert local_hub.commits("user/model-b") == before
    assert not [r for r in local_hub.requests if r.server == "cdn" or (r.status == 200 and "lfs" in r.path)]


# --------------------------------------------------------------------------------------------
# upload -> download -> offline
# --------------------------------------------------------------------------------------------


def test_upload_folder_download_snapshot_and_offline_cache(local_hub: LocalHub, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: diffusers\n---\n# glyphs\n")
    (folder / "config.json").write_text(json.dumps({"sample_size": 32}))
    weights = os.urandom(300_000)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(weights)  # LFS by .gitattributes
    big_text = b"0123456789abcdef" * (10 * 1024 * 1024 // 16 + 1)  # > 10 MiB, text, no pattern: LFS by size
    (folder / "big.txt").write_bytes(big_text)

    upload = f"""
    import json
    from huggingface_hub import HfApi
    api = HfApi()
    api.create_repo("user/glyffuser", exist_ok=True)
    info = api.upload_folder(repo_id="user/glyffuser", folder_path={str(folder)!r}, commit_message="Add model")
    files = api.list_repo_files("user/glyffuser")
    print(json.dumps({{"oid": info.oid, "url": info.commit_url, "files": files}}))
    """
    up = _last_json(run_hub_python(upload, hub_env(local_hub, tmp_path / "uploader")).stdout)
    expected = [
        ".gitattributes",
        "README.md",
        "big.txt",
        "config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    assert up["files"] == expected
    assert local_hub.list_files("user/glyffuser") == expected
    assert len(up["oid"]) == 40 and up["oid"] == local_hub.commits("user/glyffuser")[0]["oid"]
    assert up["url"] == f"{local_hub.endpoint}/user/glyffuser/commit/{up['oid']}"
    assert local_hub.commits("user/glyffuser")[0]["title"] == "Add model"
    st = local_hub.file_info("user/glyffuser", "unet/diffusion_pytorch_model.safetensors")
    assert st["lfs"] and st["sha256"] == hashlib.sha256(weights).hexdigest()
    assert local_hub.file_info("user/glyffuser", "big.txt")["lfs"]
    assert not local_hub.file_info("user/glyffuser", "config.json")["lfs"]
    assert local_hub.read_file("user/glyffuser", "unet/diffusion_pytorch_model.safetensors") == weights

    # Download into an empty HF_HOME, then again with HF_HUB_OFFLINE=1 from that cache.
    download = """
    import hashlib, json, os
    from huggingface_hub import hf_hub_download, snapshot_download
    cfg = hf_hub_download("user/glyffuser", "config.json")
    weights = hf_hub_download("user/glyffuser", "unet/diffusion_pytorch_model.safetensors")
    snap = snapshot_download("user/glyffuser")
    digest = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
    files = sorted(
        os.path.relpath(os.path.join(d, f), snap) for d, _, fs in os.walk(snap) for f in fs
    )
    print(json.dumps({
        "config": open(cfg).read(), "weights": digest(weights), "big": digest(os.path.join(snap, "big.txt")),
        "snapshot": snap, "files": files,
    }))
    """
    reader = tmp_path / "reader"
    online = _last_json(run_hub_python(download, hub_env(local_hub, reader)).stdout)
    assert json.loads(online["config"]) == {"sample_size": 32}
    assert online["weights"] == hashlib.sha256(weights).hexdigest()
    assert online["big"] == hashlib.sha256(big_text).hexdigest()
    assert online["files"] == expected
    assert Path(online["snapshot"]).name == up["oid"]  # cache layout: snapshots/<commit sha>
    # LFS content was fetched from the CDN listener (through the 302), regular files from the Hub.
    assert any(r.server == "cdn" and r.method == "GET" for r in local_hub.requests)

    n_requests = len(local_hub.requests)
    offline = _last_json(run_hub_python(download, hub_env(local_hub, reader, offline=True)).stdout)
    assert offline == online
    assert len(local_hub.requests) == n_requests, "offline mode must not contact the Hub"


def test_branches_commit_revisions_prs_and_pagination(tmp_path: Path) -> None:
    # A dedicated hub: tiny tree pages (exercise the Link-header pagination) and multipart LFS uploads.
    with LocalHub(tokens={HUB_TOKEN: "user"}, tree_page_size=2, lfs_multipart_chunk_size=50_000) as hub:
        blob = os.urandom(120_000)  # -> 3 parts
        (tmp_path / "w.bin").write_bytes(blob)
        code = f"""
        import json
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        api.create_repo("user/m")
        first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="a/x.txt", repo_id="user/m").oid
        api.upload_file(path_or_fileobj={str(tmp_path / "w.bin")!r}, path_in_repo="a/b/w.bin", repo_id="user/m")
        for i in range(3):
            api.upload_file(path_or_fileobj=str(i).encode(), path_in_repo=f"f{{i}}.txt", repo_id="user/m")
        api.create_branch("user/m", branch="dev", revision=first)
        api.upload_file(path_or_fileobj=b"v2", path_in_repo="a/x.txt", repo_id="user/m", revision="dev")
        pr = api.upload_file(path_or_fileobj=b"pr", path_in_repo="pr.txt", repo_id="user/m", create_pr=True)
        api.create_tag("user/m", tag="v1.0", revision=first)
        refs = api.list_repo_refs("user/m", include_pull_requests=True)
        read = lambda rev: open(hf_hub_download("user/m", "a/x.txt", revision=rev)).read()
        print(json.dumps({{
            "tree": sorted(f.path for f in api.list_repo_tree("user/m", recursive=True)),
            "top": sorted(f.path for f in api.list_repo_tree("user/m")),
            "sub": sorted(f.path for f in api.list_repo_tree("user/m", path_in_repo="a")),
            "main": read("main"), "dev": read("dev"), "first": read(first), "tag": read("v1.0"),
            "blob": open(hf_hub_download("user/m", "a/b/w.bin"), "rb").read().hex(),
            "pr_url": pr.pr_url, "pr_file": open(hf_hub_download("user/m", "pr.txt", revision="refs/pr/1")).read(),
            "branches": sorted(b.name for b in refs.branches), "tags": [t.name for t in refs.tags],
            "prs": [p.name for p in refs.pull_requests],
            "commits": len(api.list_repo_commits("user/m")),
        }}))
        """
        out = _last_json(run_hub_python(code, hub_env(hub, tmp_path)).stdout)
        files = [".gitattributes", "a/b/w.bin", "a/x.txt", "f0.txt", "f1.txt", "f2.txt"]
        assert out["tree"] == sorted(files + ["a", "a/b"])  # recursive listings include directories
        assert out["top"] == [".gitattributes", "a", "f0.txt", "f1.txt", "f2.txt"]
        assert out["sub"] == ["a/b", "a/x.txt"]
        assert (out["main"], out["dev"], out["first"], out["tag"]) == ("v1", "v2", "v1", "v1")
        assert bytes.fromhex(out["blob"]) == blob
        assert out["pr_url"].endswith("/user/m/discussions/1") and out["pr_file"] == "pr"
        assert out["branches"] == ["dev", "main"] and out["tags"] == ["v1.0"] and out["prs"] == ["refs/pr/1"]
        assert out["commits"] == 6  # initial + 5 uploads on main
        assert "pr.txt" not in hub.list_files("user/m")
        # Pagination really happened, and the LFS file went through the multipart transfer.
        assert any("cursor=" in r.query for r in hub.requests)
        assert sum(1 for r in hub.requests if r.server == "cdn" and "/part/" in r.path) == 3
        assert hub.file_info("user/m", "a/b/w.bin")["lfs"]
        assert not hub.server_errors


# --------------------------------------------------------------------------------------------
# failure injection
# --------------------------------------------------------------------------------------------


def test_injected_failures_surface_as_client_errors(local_hub: LocalHub, tmp_path: Path) -> None:
    local_hub.create_repo("user/model-c")
    local_hub.fail_next("/commit/", status=500)  # the commit POST is not retried by the client
    local_hub.fail_next("/upload/", status=403, method="PUT")  # LFS PUT to the CDN (4xx: not retried)
    code = """
    import json
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    api = HfApi()
    out = {}
    for key, content, path in [("commit", b"hello", "a.txt"), ("lfs", b"\\0" * 1000, "w.safetensors")]:
        try:
            api.upload_file(path_or_fileobj=content, path_in_repo=path, repo_id="user/model-c")
            out[key] = "ok"
        except Exception as e:
            cause = e if isinstance(e, HfHubHTTPError) else e.__cause__
            out[key] = [type(e).__name__, getattr(getattr(cause, "response", None), "status_code", None)]
    # Failures were one-shot: the same calls now succeed.
    out["retry"] = api.upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id="user/model-c").oid
    print(json.dumps(out))
    """
    out = _last_json(run_hub_python(code, hub_env(local_hub, tmp_path)).stdout)
    assert out["commit"] == ["HfHubHTTPError", 500]
    # The client wraps LFS errors: RuntimeError("Error while uploading ...") from HfHubHTTPError.
    assert out["lfs"][1] == 403
    assert local_hub.list_files("user/model-c") == [".gitattributes", "a.txt"]
    assert len(local_hub.commits("user/model-c")) == 2  # initial + the retry; the failed ones left no trace


def test_transient_5xx_on_lfs_upload_is_retried(local_hub: LocalHub, tmp_path: Path) -> None:
    local_hub.create_repo("user/model-d")
    local_hub.fail_next("/upload/", status=503, method="PUT")  # client backs off (1 s) and retries
    code = """
    from huggingface_hub import HfApi
    HfApi().upload_file(path_or_fileobj=b"\\0" * 1000, path_in_repo="w.safetensors", repo_id="user/model-d")
    """
    run_hub_python(code, hub_env(local_hub, tmp_path))
    puts = [r.status for r in local_hub.requests if r.server == "cdn" and r.method == "PUT"]
    assert puts == [503, 200]
    assert local_hub.read_file("user/model-d", "w.safetensors") == b"\0" * 1000


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------


def test_datasets_push_to_hub_and_load_dataset_round_trip(local_hub: LocalHub, tmp_path: Path) -> None:
    push = """
    import datasets
    from PIL import Image
    images = [Image.new("L", (8, 8), color=40 * i) for i in range(3)]
    ds = datasets.Dataset.from_dict(
        {"char": ["\\u4e00", "\\u4e8c", "\\u4e09"], "definition": ["one", "two", "three"], "image": images},
        features=datasets.Features(
            {"char": datasets.Value("string"), "definition": datasets.Value("string"), "image": datasets.Image()}
        ),
    )
    ds.push_to_hub("user/glyphs")
    datasets.DatasetDict({"train": ds, "test": ds.select([2])}).push_to_hub("user/glyphs-split")
    """
    run_hub_python(push, hub_env(local_hub, tmp_path / "pusher"))
    assert "README.md" in local_hub.list_files("user/glyphs", "dataset")
    parquet = [f for f in local_hub.list_files("user/glyphs", "dataset") if f.endswith(".parquet")]
    assert parquet and all(local_hub.file_info("user/glyphs", f, "dataset")["lfs"] for f in parquet)

    load = """
    import json
    import datasets
    ds = datasets.load_dataset("user/glyphs", split="train")
    dd = datasets.load_dataset("user/glyphs-split")
    print(json.dumps({
        "rows": [[r["char"], r["definition"], r["image"].size, r["image"].getpixel((0, 0))] for r in ds],
        "splits": {k: v.num_rows for k, v in dd.items()},
        "test_char": dd["test"][0]["char"],
    }))
    """
    out = _last_json(run_hub_python(load, hub_env(local_hub, tmp_path / "loader")).stdout)
    assert out["rows"] == [["一", "one", [8, 8], 0], ["二", "two", [8, 8], 40], ["三", "three", [8, 8], 80]]
    assert out["splits"] == {"train": 3, "test": 1}
    assert out["test_char"] == "三"
    assert not local_hub.unhandled


# --------------------------------------------------------------------------------------------
# protocol details, checked at the HTTP level (no client, fast)
# --------------------------------------------------------------------------------------------


def test_http_protocol_details(local_hub: LocalHub) -> None:
    text = b"hello glyphs\n"
    weights = b"\0\1" * 5000
    commit = local_hub.upload("user/raw", {"notes.txt": text, "w.safetensors": weights})
    ep = local_hub.endpoint
    auth = {"Authorization": f"Bearer {HUB_TOKEN}"}

    # Regular file: 200, git blob sha1 ETag, X-Repo-Commit, exact Content-Length, Range support.
    status, headers, _ = _request(hub_file_url(ep, "user/raw", "notes.txt"), "HEAD")
    assert status == 200
    blob_sha1 = hashlib.sha1(b"blob %d\0" % len(text) + text).hexdigest()  # git hash-object
    assert headers["etag"] == f'"{blob_sha1}"'
    assert headers["x-repo-commit"] == commit and headers["content-length"] == str(len(text))
    status, headers, body = _request(
        hub_file_url(ep, "user/raw", "notes.txt"), headers={"Range": "bytes=6-11"}
    )
    assert (status, body, headers["content-range"]) == (206, b"glyphs", f"bytes 6-11/{len(text)}")

    # LFS file: 302 to the CDN origin with the linked sha256 ETag and size.
    status, headers, _ = _request(hub_file_url(ep, "user/raw", "w.safetensors", revision=commit), "HEAD")
    assert status == 302
    assert headers["x-linked-etag"] == f'"{hashlib.sha256(weights).hexdigest()}"'
    assert headers["x-linked-size"] == str(len(weights))
    assert headers["location"].startswith(local_hub.cdn_endpoint)
    status, _, body = _request(headers["location"], headers={"Range": "bytes=-4"})
    assert (status, body) == (206, weights[-4:])

    # Error codes the client maps to its exception classes.
    for url, code in [
        (hub_file_url(ep, "user/nope", "x"), "RepoNotFound"),
        (hub_file_url(ep, "user/raw", "x", revision="nope"), "RevisionNotFound"),
        (hub_file_url(ep, "user/raw", "x"), "EntryNotFound"),
        (f"{ep}/api/models/user/raw/revision/{'0' * 40}", "RevisionNotFound"),
    ]:
        status, headers, body = _request(url, headers=auth)
        assert (status, headers["x-error-code"]) == (404, code), url
        assert json.loads(body)["error"]
    status, headers, _ = _request(hub_file_url(ep, "user/nope", "x"))
    assert (status, headers["x-error-code"]) == (401, "RepoNotFound")  # anonymous: 401, as on the Hub
    status, headers, _ = _request(hub_file_url(ep, "user/raw", "x"), "HEAD")
    assert headers["x-repo-commit"] == commit  # lets the client cache the absence of the file

    # Unknown token -> 401 on any request, with the Hub's message.
    status, _, body = _request(f"{ep}/api/models/user/raw", headers={"Authorization": "Bearer hf_bad"})
    assert status == 401 and json.loads(body)["error"] == "Invalid credentials in Authorization header"

    # 409 on an existing repo still carries `url` (the client's exist_ok path needs it).
    payload = json.dumps({"name": "raw", "organization": None, "type": "model"}).encode()
    headers_json = {**auth, "Content-Type": "application/json"}
    status, _, body = _request(f"{ep}/api/repos/create", "POST", headers_json, payload)
    assert status == 409 and json.loads(body)["url"] == f"{ep}/user/raw"

    # Repo info by commit sha; tree oids are git blob ids (of the pointer file for LFS entries).
    status, _, body = _request(f"{ep}/api/models/user/raw/revision/{commit}?blobs=true")
    info = json.loads(body)
    assert status == 200 and info["sha"] == commit
    by_name = {s["rfilename"]: s for s in info["siblings"]}
    assert by_name["w.safetensors"]["lfs"]["sha256"] == hashlib.sha256(weights).hexdigest()
    status, _, body = _request(f"{ep}/api/models/user/raw/tree/main")
    tree = {e["path"]: e for e in json.loads(body)}
    assert tree["notes.txt"]["oid"] == git_hash("blob", text)
    assert tree["w.safetensors"]["lfs"]["size"] == len(weights)

    # Commit endpoint guards: stale parentCommit -> 412, LFS pointer to a missing object -> 422.
    ndjson = {**auth, "Content-Type": "application/x-ndjson"}
    commit_url = f"{ep}/api/models/user/raw/commit/main"

    def ops(parent: str, *lines: dict) -> bytes:
        header = {"key": "header", "value": {"summary": "s", "description": "", "parentCommit": parent}}
        return b"".join(json.dumps(line).encode() + b"\n" for line in (header, *lines))

    first = local_hub.commits("user/raw")[-1]["oid"]
    assert _request(commit_url, "POST", ndjson, ops(first))[0] == 412
    missing = {"key": "lfsFile", "value": {"path": "x.bin", "algo": "sha256", "oid": "0" * 64, "size": 1}}
    assert _request(commit_url, "POST", ndjson, ops(commit, missing))[0] == 422
    assert local_hub.commits("user/raw")[0]["oid"] == commit

    # fail_all_writes: every write fails, reads still work.
    local_hub.fail_all_writes = 503
    assert _request(f"{ep}/api/repos/create", "POST", headers_json, payload)[0] == 503
    assert _request(f"{ep}/api/models/user/raw")[0] == 200
    local_hub.clear_failures()
    assert _request(f"{ep}/api/repos/create", "POST", headers_json, payload)[0] == 409


def test_private_repo_is_hidden_from_others(local_hub: LocalHub) -> None:
    local_hub.create_repo("user/secret", private=True)
    url = hub_file_url(local_hub.endpoint, "user/secret", ".gitattributes")
    assert _request(url)[0] == 401  # anonymous: "RepoNotFound" with 401, like the Hub
    status, headers, _ = _request(url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
    assert (status, headers["x-error-code"]) == (404, "RepoNotFound")
    assert _request(url, headers={"Authorization": f"Bearer {HUB_TOKEN}"})[0] == 200


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_server_side_helpers(repo_type: str) -> None:
    with LocalHub() as hub:
        oid = hub.upload("user/x", {"a.txt": "A", "m.parquet": b"PAR1"}, repo_type=repo_type)
        assert hub.list_files("user/x", repo_type) == [".gitattributes", "a.txt", "m.parquet"]
        assert hub.read_file("user/x", "a.txt", repo_type, revision=oid) == b"A"
        assert hub.file_info("user/x", "m.parquet", repo_type)["lfs"]  # *.parquet is in .gitattributes
    assert not hub._servers  # stopped

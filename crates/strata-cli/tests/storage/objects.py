"""Object-storage helper for the storage tests (tests/it/storage.rs).

    objects.py s3 ENDPOINT mkbucket BUCKET
    objects.py s3 ENDPOINT put BUCKET KEY FILE
    objects.py s3 ENDPOINT keys BUCKET              -> one key per line
    objects.py s3 ENDPOINT read TABLE_URL           -> the Delta table's rows as JSON lines, sorted
    objects.py az ENDPOINT mkbucket CONTAINER       (Azurite, well-known account)
    objects.py az ENDPOINT put CONTAINER KEY FILE
    objects.py az ENDPOINT keys CONTAINER
    objects.py az ENDPOINT read TABLE_URL

Tables are read with the Python `deltalake` package: a reader independent of
Strata's own.
"""
import json
import os
import sys

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def s3_client(endpoint):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
        region_name="us-east-1",
    )


def az_service(endpoint):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient(account_url=f"{endpoint}/{ACCOUNT}", credential={"account_name": ACCOUNT, "account_key": KEY})


def options(cloud, endpoint):
    if cloud == "s3":
        opts = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test-key",
            "AWS_SECRET_ACCESS_KEY": "test-secret",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
    else:
        os.environ["AZURITE_BLOB_STORAGE_URL"] = endpoint
        opts = {"AZURE_STORAGE_USE_EMULATOR": "true"}
    return opts


def read(cloud, endpoint, url):
    import deltalake

    opts = options(cloud, endpoint)
    rows = deltalake.DeltaTable(url, storage_options=opts).to_pyarrow_table().to_pylist()
    out = [json.dumps(r, sort_keys=True, default=str) for r in rows]
    for line in sorted(out):
        print(line)


def stats(cloud, endpoint, url):
    """Each data file's statistics as the reader parses them from the log
    (`num_records`, `null_count.C`, `min.C`, `max.C`), one JSON line each."""
    import deltalake
    import pyarrow

    t = deltalake.DeltaTable(url, storage_options=options(cloud, endpoint))
    for r in pyarrow.table(t.get_add_actions(flatten=True)).to_pylist():
        keep = {k: v for k, v in r.items() if k == "num_records" or k.startswith(("min.", "max.", "null_count."))}
        print(json.dumps(keep, sort_keys=True, default=str))


def files(cloud, endpoint, url):
    """The table's active data files, as paths relative to it, one per line."""
    import deltalake
    import pyarrow

    t = deltalake.DeltaTable(url, storage_options=options(cloud, endpoint))
    for r in pyarrow.table(t.get_add_actions(flatten=True)).to_pylist():
        print(r["path"])


def main():
    cloud, endpoint, verb, *args = sys.argv[1:]
    if verb == "read":
        return read(cloud, endpoint, args[0])
    if verb == "files":
        return files(cloud, endpoint, args[0])
    if verb == "stats":
        return stats(cloud, endpoint, args[0])
    if cloud == "s3":
        c = s3_client(endpoint)
        if verb == "mkbucket":
            c.create_bucket(Bucket=args[0])
        elif verb == "put":
            with open(args[2], "rb") as f:
                c.put_object(Bucket=args[0], Key=args[1], Body=f.read())
        elif verb == "keys":
            pages = c.get_paginator("list_objects_v2").paginate(Bucket=args[0])
            for p in pages:
                for o in p.get("Contents", []):
                    print(o["Key"])
    else:
        svc = az_service(endpoint)
        if verb == "mkbucket":
            svc.create_container(args[0])
        elif verb == "put":
            with open(args[2], "rb") as f:
                svc.get_blob_client(args[0], args[1]).upload_blob(f.read(), overwrite=True)
        elif verb == "keys":
            for b in svc.get_container_client(args[0]).list_blobs():
                print(b.name)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # The Delta reader's threads can abort the interpreter's teardown.
    os._exit(0)

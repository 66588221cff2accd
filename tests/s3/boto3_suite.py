"""The S3 gateway driven by boto3, as an application would use it.

Usage: boto3_suite.py ENDPOINT ACCESS_KEY SECRET_KEY SCRATCH_DIR
Exits non-zero with a message at the first check that fails.
"""
import hashlib
import os
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, access_key, secret_key, scratch = sys.argv[1:5]
config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10, "mode": "standard"})


def client(secret=secret_key):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret,
                        region_name="us-east-1", config=config)


def error_code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("expected an error")


s3 = client()
s3.create_bucket(Bucket="bkt1")
assert "bkt1" in [b["Name"] for b in s3.list_buckets()["Buckets"]], "ListBuckets"
assert error_code(lambda: s3.create_bucket(Bucket="bkt1")) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")

# Put, get, ranges, head.
s3.put_object(Bucket="bkt1", Key="a.txt", Body=b"hello world")
assert s3.get_object(Bucket="bkt1", Key="a.txt")["Body"].read() == b"hello world", "GetObject"
ranged = s3.get_object(Bucket="bkt1", Key="a.txt", Range="bytes=1-3")
assert ranged["Body"].read() == b"ell", "a range"
assert ranged["ContentRange"] == "bytes 1-3/11", ranged["ContentRange"]
assert s3.get_object(Bucket="bkt1", Key="a.txt", Range="bytes=-5")["Body"].read() == b"world", "a suffix range"
assert s3.head_object(Bucket="bkt1", Key="a.txt")["ContentLength"] == 11, "HeadObject"
assert error_code(lambda: s3.head_object(Bucket="bkt1", Key="missing")) in ("404", "NoSuchKey")
assert error_code(lambda: s3.get_object(Bucket="bkt1", Key="missing")) == "NoSuchKey"
s3.put_object(Bucket="bkt1", Key="a.txt", Body=b"replaced")
assert s3.get_object(Bucket="bkt1", Key="a.txt")["Body"].read() == b"replaced", "a PUT replaces the object"

# Listings: prefix, delimiter, pagination.
for i in range(1, 6):
    s3.put_object(Bucket="bkt1", Key=f"dir/x{i}", Body=f"x{i}".encode())
s3.put_object(Bucket="bkt1", Key="dir/sub/y", Body=b"y")
page = s3.list_objects_v2(Bucket="bkt1", Prefix="dir/", Delimiter="/")
assert [o["Key"] for o in page["Contents"]] == [f"dir/x{i}" for i in range(1, 6)], page
assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["dir/sub/"], page
keys, token = [], None
while True:
    kwargs = {"Bucket": "bkt1", "Prefix": "dir/", "MaxKeys": 2}
    if token:
        kwargs["ContinuationToken"] = token
    page = s3.list_objects_v2(**kwargs)
    keys += [o["Key"] for o in page.get("Contents", [])]
    if not page["IsTruncated"]:
        break
    token = page["NextContinuationToken"]
assert keys == ["dir/sub/y"] + [f"dir/x{i}" for i in range(1, 6)], keys  # byte order, as S3
assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt1", StartAfter="dir/x4")["Contents"]] == ["dir/x5"]
# The first listing version pages by Marker (older clients and tools set to it).
keys, marker = [], ""
while True:
    page = s3.list_objects(Bucket="bkt1", Prefix="dir/", MaxKeys=2, Marker=marker)
    keys += [o["Key"] for o in page.get("Contents", [])]
    if not page["IsTruncated"]:
        break
    marker = page.get("NextMarker") or keys[-1]
assert keys == ["dir/sub/y"] + [f"dir/x{i}" for i in range(1, 6)], keys
page = s3.list_objects(Bucket="bkt1", Prefix="dir/", Delimiter="/")
assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["dir/sub/"] and len(page["Contents"]) == 5, page

# Copy, then delete several at once (a missing key counts as deleted).
s3.copy_object(Bucket="bkt1", Key="copies/x1", CopySource={"Bucket": "bkt1", "Key": "dir/x1"})
assert s3.get_object(Bucket="bkt1", Key="copies/x1")["Body"].read() == b"x1", "CopyObject"
deleted = s3.delete_objects(Bucket="bkt1", Delete={"Objects": [{"Key": "dir/x1"}, {"Key": "dir/x2"}, {"Key": "never-was"}]})
assert sorted(d["Key"] for d in deleted["Deleted"]) == ["dir/x1", "dir/x2", "never-was"], deleted
s3.delete_object(Bucket="bkt1", Key="dir/sub/y")
left = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt1", Prefix="dir/")["Contents"]]
assert left == ["dir/x3", "dir/x4", "dir/x5"], left

# A multipart upload of 100 MiB, downloaded and compared.
big = os.path.join(scratch, "big.bin")
with open(big, "wb") as f:
    f.write(os.urandom(100 << 20))
transfer = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=16 << 20, max_concurrency=4)
s3.upload_file(big, "bkt1", "big/object.bin", Config=transfer)
assert s3.head_object(Bucket="bkt1", Key="big/object.bin")["ContentLength"] == 100 << 20
back = os.path.join(scratch, "big.back")
s3.download_file("bkt1", "big/object.bin", back, Config=transfer)
digest = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
assert digest(big) == digest(back), "the multipart object differs"
# Ranges that cross a 64 MiB block boundary and end at the last byte.
source = open(big, "rb").read()
for first, last in [((64 << 20) - 10, (64 << 20) + 9), ((32 << 20) + 5, (96 << 20) + 5), ((100 << 20) - 7, (100 << 20) - 1)]:
    body = s3.get_object(Bucket="bkt1", Key="big/object.bin", Range=f"bytes={first}-{last}")["Body"].read()
    assert body == source[first:last + 1], f"range {first}-{last} differs"
# An aborted upload leaves nothing.
upload = s3.create_multipart_upload(Bucket="bkt1", Key="aborted")["UploadId"]
s3.upload_part(Bucket="bkt1", Key="aborted", UploadId=upload, PartNumber=1, Body=b"z" * 1000)
s3.abort_multipart_upload(Bucket="bkt1", Key="aborted", UploadId=upload)
assert error_code(lambda: s3.head_object(Bucket="bkt1", Key="aborted")) in ("404", "NoSuchKey")
assert error_code(lambda: s3.upload_part(Bucket="bkt1", Key="aborted", UploadId=upload, PartNumber=2, Body=b"z")) == "NoSuchUpload"

# Bad input: a wrong signature, a key tachyon cannot hold; nothing half-written is visible.
assert error_code(lambda: client(secret="wrong").list_buckets()) in ("SignatureDoesNotMatch", "AccessDenied")
assert error_code(lambda: client(secret="wrong").put_object(Bucket="bkt1", Key="forged", Body=b"x")) in ("SignatureDoesNotMatch", "AccessDenied")
assert error_code(lambda: s3.put_object(Bucket="bkt1", Key="bad//key", Body=b"x")) == "InvalidArgument"
all_keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt1")["Contents"]]
assert "forged" not in all_keys and not any("bad" in k for k in all_keys), all_keys
assert error_code(lambda: s3.delete_bucket(Bucket="bkt1")) == "BucketNotEmpty"
assert "bkt1" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
assert ".tachyon-s3" not in [b["Name"] for b in s3.list_buckets()["Buckets"]], "the gateway's own folder is not a bucket"
print("boto3 suite passed")

#!/usr/bin/env bash
# Installs the under-storage servers the integration tests start on loopback, into a cache
# folder outside the clone (kept between runs; everything here also works from empty):
#   - moto's S3-compatible server (PyPI moto[server]==5.2.5) in a venv;
#   - Hadoop 2.7.3's NameNode and DataNode jars, from the PyPI sdist of pyspark 2.4.8
#     (no Hadoop package exists in the registries we reach). Needs java (Debian's
#     zookeeper package brings it);
#   - the deploy checker's Python tools (kubernetes-validate, dockerfile) in a venv;
#   - the S3 clients the gateway is tested with (boto3, the AWS CLI) in a venv.
# The tests find them through TACHYON_TEST_CACHE (default ~/.cache/tachyon).
set -euo pipefail
cache=${TACHYON_TEST_CACHE:-$HOME/.cache/tachyon}
mkdir -p "$cache"

if [ ! -x "$cache/moto-venv/bin/moto_server" ]; then
  echo "== installing moto[server]==5.2.5 (S3-compatible test server) into $cache/moto-venv"
  rm -rf "$cache/moto-venv"
  python3 -m venv "$cache/moto-venv"
  "$cache/moto-venv/bin/pip" install -q 'moto[server]==5.2.5'
fi

# The offline checker of the container image and Kubernetes manifests (deploy/check.py):
# kubernetes-validate carries the Kubernetes API schemas; dockerfile wraps the official
# Dockerfile parser.
if [ ! -x "$cache/deploy-venv/bin/kubernetes-validate" ] || ! "$cache/deploy-venv/bin/python" -c 'import dockerfile' 2>/dev/null; then
  echo "== installing kubernetes-validate==1.37.0 and dockerfile==3.4.0 into $cache/deploy-venv"
  rm -rf "$cache/deploy-venv"
  python3 -m venv "$cache/deploy-venv"
  "$cache/deploy-venv/bin/pip" install -q 'kubernetes-validate==1.37.0' 'dockerfile==3.4.0'
fi

# Real S3 clients for the gateway tests (tests/proxy.rs).
if [ ! -x "$cache/s3-clients-venv/bin/aws" ] || ! "$cache/s3-clients-venv/bin/python" -c 'import boto3' 2>/dev/null; then
  echo "== installing boto3==1.43.11 and awscli==1.45.11 into $cache/s3-clients-venv"
  rm -rf "$cache/s3-clients-venv"
  python3 -m venv "$cache/s3-clients-venv"
  "$cache/s3-clients-venv/bin/pip" install -q 'boto3==1.43.11' 'awscli==1.45.11'
fi

jars="$cache/hadoop/pyspark-2.4.8/deps/jars"
if [ ! -e "$jars/hadoop-hdfs-2.7.3.jar" ]; then
  echo "== fetching Hadoop 2.7.3 jars (pyspark==2.4.8 sdist from PyPI, ~220 MB) into $cache/hadoop"
  rm -rf "$cache/hadoop-venv" "$cache/hadoop-dl" "$cache/hadoop"
  python3 -m venv "$cache/hadoop-venv"
  "$cache/hadoop-venv/bin/pip" install -q wheel setuptools
  "$cache/hadoop-venv/bin/pip" download -q pyspark==2.4.8 --no-deps --no-build-isolation -d "$cache/hadoop-dl"
  mkdir -p "$cache/hadoop"
  tar xzf "$cache/hadoop-dl/pyspark-2.4.8.tar.gz" -C "$cache/hadoop" --wildcards '*/deps/jars/*'
  rm -rf "$cache/hadoop-dl" "$cache/hadoop-venv"
fi
[ -e "$jars/hadoop-hdfs-2.7.3.jar" ] || { echo "Hadoop jars missing in $jars" >&2; exit 1; }

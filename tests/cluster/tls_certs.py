"""Test certificates, made with the openssl command line (Debian 12: openssl 3.0) at test
time; nothing is checked in. Used by cluster_test.py and tests/bench/bench.py.

    certs = make_certs(DIR)   # {"ca": path, "node_cert": path, "node_key": path, ...}

EC P-256 keys (fast to make). Node certificates carry DNS:localhost, DNS:127.0.0.1 and
IP:127.0.0.1 (kj-tls checks a server's name against DNS names only) and both extended
key usages, since a node is the server on its ports and the client when it dials a peer.
The expired and not-yet-valid certificates are signed with `openssl ca -startdate
-enddate`: `openssl x509 -days` cannot go into the past, and openssl 3.0's `req` has no
-not_before/-not_after."""
import os
import subprocess

NODE_SAN = "DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1"

CA_CONFIG = """[ca]
default_ca = test_ca
[test_ca]
database = {db}/index.txt
new_certs_dir = {db}
serial = {db}/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
"""


class CertError(Exception):
    pass


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise CertError(f"openssl {' '.join(args)} failed: {r.stderr.decode(errors='replace')}")


def make_ca(d, name):
    """A self-signed CA: NAME.pem, NAME.key and an `openssl ca` database NAME-db."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30",
            "-subj", f"/CN=kvraft test {name}", cwd=d)
    db = os.path.join(d, f"{name}-db")
    os.makedirs(db)
    open(os.path.join(db, "index.txt"), "w").close()
    with open(os.path.join(db, "serial"), "w") as f:
        f.write("01\n")
    with open(os.path.join(d, f"{name}.cnf"), "w") as f:
        f.write(CA_CONFIG.format(db=db))


def issue(d, ca, name, cn, san=None, usage="serverAuth,clientAuth", dates=("-days", "30")):
    """NAME.pem / NAME.key signed by CA; `dates` are `openssl ca` validity flags."""
    req = ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
           "-addext", f"extendedKeyUsage={usage}"]
    if san:
        req += ["-addext", f"subjectAltName={san}"]
    openssl(*req, cwd=d)
    openssl("ca", "-batch", "-config", f"{ca}.cnf", "-cert", f"{ca}.pem", "-keyfile", f"{ca}.key",
            "-in", f"{name}.csr", "-out", f"{name}.pem", "-notext", *dates, cwd=d)


def make_certs(d):
    """Every certificate the TLS tests and the bench need, in directory d."""
    os.makedirs(d, exist_ok=True)
    make_ca(d, "ca")
    make_ca(d, "other_ca")
    issue(d, "ca", "node", "kvraft node", NODE_SAN)
    issue(d, "ca", "client", "kvraft client", usage="clientAuth")
    issue(d, "other_ca", "other_node", "kvraft node of another CA", NODE_SAN)
    issue(d, "ca", "expired", "kvraft expired node", NODE_SAN,
          dates=("-startdate", "20200101000000Z", "-enddate", "20200102000000Z"))
    issue(d, "ca", "future", "kvraft future node", NODE_SAN,
          dates=("-startdate", "20990101000000Z", "-enddate", "20990102000000Z"))
    paths = {"ca": "ca.pem", "other_ca": "other_ca.pem"}
    for name in ("node", "client", "other_node", "expired", "future"):
        paths[f"{name}_cert"] = f"{name}.pem"
        paths[f"{name}_key"] = f"{name}.key"
    return {k: os.path.join(d, v) for k, v in paths.items()}
